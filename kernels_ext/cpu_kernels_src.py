"""C source of thunder's fused CPU kernels (built on first use by `kernels_ext.cpu_fused`).

NOTE: the elementwise kernels open an OpenMP region only above ~1M elements (prefill): each region is a barrier
that stalls when a thread is descheduled on a shared machine, and decode-sized rows take tens of us serially.

Plain C99 + OpenMP over raw pointers (no torch headers, so a build takes about a second). Every kernel takes
``bf`` (1: bfloat16 storage, 0: float32) and computes in float32. Rounding follows the eager torch ops they
replace: where eager torch rounds an intermediate to bfloat16 (SiLU before the product, RoPE's ``x * cos``),
the kernel rounds it too.
"""

SOURCE = r"""
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

typedef uint16_t bf16;
#define QB 16  /* query tokens per attention work item */
#define KB 16  /* keys per online-softmax block */

static inline float b2f(bf16 x) { uint32_t u = ((uint32_t)x) << 16; float f; memcpy(&f, &u, 4); return f; }
static inline bf16 f2b(float f) {
    uint32_t u; memcpy(&u, &f, 4);
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    return (bf16)(((u & 0x7fffffffu) > 0x7f800000u) ? ((u >> 16) | 0x40u) : r);
}
static inline float rnd(float f, int bf) { return bf ? b2f(f2b(f)) : f; }

static void load_row(const void* src, float* dst, long n, int bf) {
    if (bf) { const bf16* s = (const bf16*)src;
#pragma omp simd
        for (long i = 0; i < n; i++) dst[i] = b2f(s[i]);
    } else memcpy(dst, src, n * sizeof(float));
}
static void store_row(const float* src, void* dst, long n, int bf) {
    if (bf) { bf16* d = (bf16*)dst;
#pragma omp simd
        for (long i = 0; i < n; i++) d[i] = f2b(src[i]);
    } else memcpy(dst, src, n * sizeof(float));
}
static inline size_t esz(int bf) { return bf ? 2 : 4; }
#define AT(p, i, bf) ((char*)(p) + (size_t)(i) * esz(bf))
#define CAT(p, i, bf) ((const char*)(p) + (size_t)(i) * esz(bf))

/* Cephes-style expf: ~1 ulp on [-87, 88], vectorisable (no libm call). */
static inline float vexp(float x) {
    x = fminf(fmaxf(x, -87.0f), 88.0f);
    float n = rintf(x * 1.44269504088896341f);
    float r = fmaf(n, -0.693359375f, x);
    r = fmaf(n, 2.12194440e-4f, r);
    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f); p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f); p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    float y = fmaf(p * r, r, r) + 1.0f;
    int32_t e = ((int32_t)n + 127) << 23; float s; memcpy(&s, &e, 4);
    return y * s;
}

#if defined(__AVX512F__)
#include <immintrin.h>

static inline __m512 load16(const void* p, int bf) {
    if (bf) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)p)), 16));
    return _mm512_loadu_ps((const float*)p);
}
static inline __m512 vexp16(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-0.693359375f), x);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    __m512 y = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(y, n);
}
/* out[j] = sum of the 16 lanes of v[j], j < 16 (transpose-and-add tree). */
static inline __m512 hsum16x16(__m512* v) {
    __m512 t[8], u[4], w[2];
    for (int j = 0; j < 8; j++)
        t[j] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * j], v[2 * j + 1]), _mm512_unpackhi_ps(v[2 * j], v[2 * j + 1]));
    for (int j = 0; j < 4; j++)
        u[j] = _mm512_add_ps(
            _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[2 * j]), _mm512_castps_pd(t[2 * j + 1]))),
            _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[2 * j]), _mm512_castps_pd(t[2 * j + 1]))));
    for (int j = 0; j < 2; j++)
        w[j] = _mm512_add_ps(_mm512_shuffle_f32x4(u[2 * j], u[2 * j + 1], 0x88), _mm512_shuffle_f32x4(u[2 * j], u[2 * j + 1], 0xDD));
    return _mm512_add_ps(_mm512_shuffle_f32x4(w[0], w[1], 0x88), _mm512_shuffle_f32x4(w[0], w[1], 0xDD));
}
/* The float32 bits of v rounded to nearest-even bfloat16 in the high half (f2b's rule for non-NaN lanes). */
static inline __m512i rne16(__m512 v) {
    __m512i u = _mm512_castps_si512(v);
    return _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1))));
}
static inline void store16(void* p, __m512 v, int bf) {
    if (bf) _mm256_storeu_si256((__m256i*)p, _mm512_cvtepi32_epi16(_mm512_srli_epi32(rne16(v), 16)));
    else _mm512_storeu_ps((float*)p, v);
}
static inline __m512 round16(__m512 v, int bf) {
    if (!bf) return v;
    return _mm512_castsi512_ps(_mm512_and_si512(rne16(v), _mm512_set1_epi32((int)0xffff0000u)));
}
/* acc[i] = acc[i] * corr[i] + sum_j p[i * KB + j] * v[j] for NR (constant after inlining) query rows. */
static inline __attribute__((always_inline)) void pv_rows(const int NR, float* acc, const float* corr,
        const float* p, const char* const* vrow, long nv, long d, int bf) {
    long es = bf ? 2 : 4;
    for (long c = 0; c < d; c += 16) {
        __m512 a[4];
        for (int i = 0; i < NR; i++) a[i] = _mm512_mul_ps(_mm512_loadu_ps(acc + i * d + c), _mm512_set1_ps(corr[i]));
        for (long j = 0; j < nv; j++) {
            __m512 v = load16(vrow[j] + c * es, bf);
            for (int i = 0; i < NR; i++) a[i] = _mm512_fmadd_ps(_mm512_set1_ps(p[i * KB + j]), v, a[i]);
        }
        for (int i = 0; i < NR; i++) _mm512_storeu_ps(acc + i * d + c, a[i]);
    }
}
#define HAVE_AVX512 1
#endif

/* residual[r] += delta[r] (if delta), then out[r] = rms_norm(residual[r]) * w. rows x n, row-contiguous. */
void th_add_rms_norm(void* residual, const void* delta, void* out, const void* w, long rows, long n,
                     float eps, int bf, int nt) {
#pragma omp parallel for num_threads(nt) if (rows * n >= 1048576) schedule(static)
    for (long r = 0; r < rows; r++) {
        float x[n], d[n], wf[n];
        load_row(CAT(residual, r * n, bf), x, n, bf);
        if (delta) {
            load_row(CAT(delta, r * n, bf), d, n, bf);
            for (long i = 0; i < n; i++) x[i] = rnd(x[i] + d[i], bf);
            store_row(x, AT(residual, r * n, bf), n, bf);
        }
        float ss = 0.0f;
#pragma omp simd reduction(+:ss)
        for (long i = 0; i < n; i++) ss += x[i] * x[i];
        float inv = 1.0f / sqrtf(ss / (float)n + eps);
        load_row(w, wf, n, bf);
        for (long i = 0; i < n; i++) x[i] = x[i] * inv * wf[i];
        store_row(x, AT(out, r * n, bf), n, bf);
    }
}

/* x += y over n contiguous elements (serial below ~1M: a decode residual add is a few us). */
void th_add_(void* x, const void* y, long n, int bf, int nt) {
#pragma omp parallel for num_threads(nt) if (n >= 1048576) schedule(static)
    for (long i0 = 0; i0 < n; i0 += 4096) {
        long m = n - i0 < 4096 ? n - i0 : 4096;
        float a[4096], b[4096];
        load_row(CAT(x, i0, bf), a, m, bf);
        load_row(CAT(y, i0, bf), b, m, bf);
        for (long i = 0; i < m; i++) a[i] += b[i];
        store_row(a, AT(x, i0, bf), m, bf);
    }
}

/* out[r, i] = silu(gu[r, i]) * gu[r, inter + i]; gu rows x 2*inter, out rows x inter. */
void th_silu_mul(const void* gu, void* out, long rows, long inter, int bf, int nt) {
#pragma omp parallel for num_threads(nt) if (rows * inter >= 1048576) schedule(static)
    for (long r = 0; r < rows; r++) {
#ifdef HAVE_AVX512
        if (inter % 16 == 0) {
            const char* gp = CAT(gu, r * 2 * inter, bf);
            const char* up = CAT(gu, r * 2 * inter + inter, bf);
            char* op = AT(out, r * inter, bf);
            for (long i = 0; i < inter; i += 16) {
                __m512 g = load16(gp + i * esz(bf), bf), u = load16(up + i * esz(bf), bf);
                __m512 sg = _mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), vexp16(_mm512_sub_ps(_mm512_setzero_ps(), g))));
                store16(op + i * esz(bf), _mm512_mul_ps(round16(sg, bf), u), bf);
            }
            continue;
        }
#endif
        float g[inter], u[inter];
        load_row(CAT(gu, r * 2 * inter, bf), g, inter, bf);
        load_row(CAT(gu, r * 2 * inter + inter, bf), u, inter, bf);
#pragma omp simd
        for (long i = 0; i < inter; i++) g[i] = rnd(g[i] / (1.0f + vexp(-g[i])), bf) * u[i];
        store_row(g, AT(out, r * inter, bf), inter, bf);
    }
}

/* out[r] = index of the first maximum of row r of x [rows, n] (rows `stride` elements apart); a NaN counts
   as the maximum (the first NaN wins), as in torch.max. Serial: 64 x 49152 float32 logits take ~0.4 ms on one
   Zen 5 core, and a parallel region per step costs more than that whenever another process holds a core. */
void th_argmax_rows(const void* x, long rows, long n, long stride, int64_t* out, int bf) {
    for (long r = 0; r < rows; r++) {
        const char* p = CAT(x, r * stride, bf);
        long best = 0, i = 0;
        float bv = -INFINITY;
        int nan = 0;
#ifdef HAVE_AVX512
        if (n >= 16) {
            __m512 vmax = _mm512_set1_ps(-INFINITY);
            __m512i vidx = _mm512_setzero_si512(), cur = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            __mmask16 unord = 0;
            for (; i + 16 <= n; i += 16) {
                __m512 v = load16(p + i * (long)esz(bf), bf);
                __mmask16 gt = _mm512_cmp_ps_mask(v, vmax, _CMP_GT_OQ);  /* strict: a lane keeps its first max */
                unord |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
                vmax = _mm512_mask_mov_ps(vmax, gt, v);
                vidx = _mm512_mask_mov_epi32(vidx, gt, cur);
                cur = _mm512_add_epi32(cur, _mm512_set1_epi32(16));
            }
            float lv[16]; int32_t li[16];
            _mm512_storeu_ps(lv, vmax); _mm512_storeu_si512(li, vidx);
            for (int j = 0; j < 16; j++)
                if (lv[j] > bv || (lv[j] == bv && li[j] < best)) { bv = lv[j]; best = li[j]; }
            nan = unord != 0;
        }
#endif
        for (long k = i; k < n && !nan; k++) {
            float v = bf ? b2f(((const bf16*)p)[k]) : ((const float*)p)[k];
            if (v != v) nan = 1;
            else if (v > bv) { bv = v; best = k; }
        }
        if (nan)
            for (long k = 0; k < n; k++) {
                float v = bf ? b2f(((const bf16*)p)[k]) : ((const float*)p)[k];
                if (v != v) { best = k; break; }
            }
        out[r] = best;
    }
}

/* In place, heads [0, nheads) of every token row t (row_stride elements apart, head_dim d apart):
   x = x * cos[pos[t]] + rotate_half(x) * sin_signed[pos[t]] (tables max_pos x d, model dtype). */
void th_rope(void* x, long tokens, long row_stride, long nheads, long d, const void* cos_t,
             const void* sin_t, const int64_t* pos, int bf, int nt) {
    long half = d / 2;
#pragma omp parallel for num_threads(nt) if (tokens * nheads * d >= 1048576) schedule(static)
    for (long t = 0; t < tokens; t++) {
        float c[d], s[d], v[d], o[d];
        load_row(CAT(cos_t, pos[t] * d, bf), c, d, bf);
        load_row(CAT(sin_t, pos[t] * d, bf), s, d, bf);
        for (long h = 0; h < nheads; h++) {
            void* p = AT(x, t * row_stride + h * d, bf);
            load_row(p, v, d, bf);
            for (long i = 0; i < d; i++) {
                float rot = v[i < half ? i + half : i - half];
                o[i] = rnd(v[i] * c[i], bf) + rot * s[i];
            }
            store_row(o, p, d, bf);
        }
    }
}

/* Copy k/v rows (tokens x width, k_stride/v_stride elements apart) to rows[t] / rows[t] + page_size of
   cache viewed as [-1, width]. */
void th_write_kv(void* cache, const void* k, long k_stride, const void* v, long v_stride,
                 const int64_t* rows, long tokens, long width, long page_size, int bf) {
    size_t nb = (size_t)width * esz(bf);
    for (long t = 0; t < tokens; t++) {
        memcpy(AT(cache, rows[t] * width, bf), CAT(k, t * k_stride, bf), nb);
        memcpy(AT(cache, (rows[t] + page_size) * width, bf), CAT(v, t * v_stride, bf), nb);
    }
}


typedef struct { long b, s0; } item_t;

/* Row of key k's page slot in the cache, in units of [hkv, d] token rows (its V row is page_size * hkv after). */
static inline long kv_token_row(const int32_t* pages, long k, long page_size, long shift, int pow2) {
    long pg = pow2 ? k >> shift : k / page_size, slot = pow2 ? k & (page_size - 1) : k % page_size;
    return (long)pages[pg] * 2 * page_size + slot;
}

static item_t* make_items(const int32_t* qo_indptr, long batch, long* nitems) {
    item_t* items = (item_t*)malloc(sizeof(item_t) * (size_t)(qo_indptr[batch] + batch + 1));
    long n = 0;
    for (long b = 0; b < batch; b++)
        for (long s = 0; s < qo_indptr[b + 1] - qo_indptr[b]; s += QB) { items[n].b = b; items[n].s0 = s; n++; }
    *nitems = n;
    return items;
}


/* Causal (bottom-right aligned) GQA attention of q [nnz, hq, d] (token stride q_stride) over one layer's
   paged cache [pages, 2, page_size, hkv, d]; writes out [nnz, hq, d] (token stride out_stride).
   One work item = (request, block of up to QB query tokens[, kv head]); keys stream in blocks of KB with an
   online softmax, so each K/V row is read and converted once per item. */
void th_paged_attention(const void* q, long q_stride, void* out, long out_stride, const void* cache,
                        const int32_t* qo_indptr, const int32_t* kv_indptr, const int32_t* kv_indices,
                        const int32_t* kv_lens, long batch, long hq, long hkv, long d, long page_size,
                        float scale, int bf, int nt) {
    long g = hq / hkv, nitems, shift = 0;
    int pow2 = (page_size & (page_size - 1)) == 0;  /* NOTE: shifts, not divides, in the key loop */
    while ((1L << shift) < page_size) shift++;
    item_t* items = make_items(qo_indptr, batch, &nitems);
    /* NOTE: with enough items, one item covers every kv head: each key block is then one contiguous
       [KB, hkv, d] run of a page, which the hardware prefetcher streams (one head per item reads 1/hkv of
       every token row, and decode was bound by DRAM latency). */
    long hpi = nitems >= 4 * nt ? hkv : 1, hsplit = hkv / hpi;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nitems * hsplit > 1)
    for (long it = 0; it < nitems * hsplit; it++) {
        long b = items[it / hsplit].b, s0 = items[it / hsplit].s0, h0 = (it % hsplit) * hpi;
        long qlen = qo_indptr[b + 1] - qo_indptr[b], kvlen = kv_lens[b];
        long ntok = qlen - s0 < QB ? qlen - s0 : QB;
        long nrow = ntok * g;
        long first = kvlen - qlen + s0;   /* the block's first token sees keys [0, first] */
        long nkeys = first + ntok;        /* keys any row of the block sees */
        const int32_t* pages = kv_indices + kv_indptr[b];
        float* buf = (float*)malloc(sizeof(float) * (size_t)(hpi * (2 * nrow * d + 3 * nrow + nrow * KB) + 2 * KB * d + 64));
        float *QF = buf, *ACC = QF + hpi * nrow * d, *kf = ACC + hpi * nrow * d, *vf = kf + KB * d;
        float *M = vf + KB * d, *L = M + hpi * nrow, *CR = L + hpi * nrow, *PB = CR + hpi * nrow;
#define HEAD_STATE long h = h0 + hh; float *qf = QF + hh * nrow * d, *acc = ACC + hh * nrow * d, *m = M + hh * nrow, \
            *l = L + hh * nrow, *cr = CR + hh * nrow, *pb = PB + hh * nrow * KB; (void)cr; (void)pb; (void)qf;
        for (long hh = 0; hh < hpi; hh++) {
        HEAD_STATE
        for (long r = 0; r < nrow; r++) {
            long tok = qo_indptr[b] + s0 + r / g, head = h * g + r % g;
            load_row(CAT(q, tok * q_stride + head * d, bf), qf + r * d, d, bf);
            for (long i = 0; i < d; i++) { qf[r * d + i] *= scale; acc[r * d + i] = 0.0f; }
            m[r] = -INFINITY; l[r] = 0.0f;
        }
        }
        for (long kb = 0; kb < nkeys; kb += KB) {
            long nk = nkeys - kb < KB ? nkeys - kb : KB;
            if (hpi == hkv && kb + KB < nkeys) {  /* the next block's K and V rows, all heads: to L2 */
                long k1 = kb + 2 * KB < nkeys ? kb + 2 * KB : nkeys;
                for (long k = kb + KB; k < k1; k++) {
                    long row = kv_token_row(pages, k, page_size, shift, pow2) * hkv;
                    const char *kp = CAT(cache, row * d, bf), *vp = CAT(cache, (row + page_size * hkv) * d, bf);
                    for (long o = 0; o < hkv * d * (long)esz(bf); o += 64) { __builtin_prefetch(kp + o, 0, 1); __builtin_prefetch(vp + o, 0, 1); }
                }
            }
            for (long hh = 0; hh < hpi; hh++) {
            HEAD_STATE
            const char *krow[KB], *vrow[KB];
            for (long j = 0; j < KB; j++) {
                long k = kb + (j < nk ? j : 0);
                long row = kv_token_row(pages, k, page_size, shift, pow2) * hkv + h;
                krow[j] = CAT(cache, row * d, bf);
                vrow[j] = CAT(cache, (row + page_size * hkv) * d, bf);
            }
#ifdef HAVE_AVX512
            int vec = d % 16 == 0;
#else
            int vec = 0;
#endif
            if (!vec)
                for (long j = 0; j < nk; j++) { load_row(krow[j], kf + j * d, d, bf); load_row(vrow[j], vf + j * d, d, bf); }
            long r0 = kb <= first ? 0 : (kb - first) * g;   /* rows before r0 see no key of this block */
            for (long r = r0; r < nrow; r++) {
                long nv = first + r / g + 1 - kb;          /* keys of this block that row r sees */
                if (nv > nk) nv = nk;
                const float* qr = qf + r * d;
                float* ar = acc + r * d;
                float sc[KB];
#ifdef HAVE_AVX512
                if (vec) {
                    __m512 part[KB];
                    for (long j = 0; j < KB; j++) part[j] = _mm512_setzero_ps();
                    long es = bf ? 2 : 4;
                    float post = 1.0f;  /* NOTE: no vdpbf16ps here: its pairwise rounding flipped a bf16 greedy tie */
                    for (long c = 0; c < d; c += 16) {
                        __m512 qv = _mm512_loadu_ps(qr + c);
                        for (int j = 0; j < KB; j++) part[j] = _mm512_fmadd_ps(qv, load16(krow[j] + c * es, bf), part[j]);
                    }
                    __mmask16 live = (__mmask16)((1u << nv) - 1u);
                    __m512 s = _mm512_mask_blend_ps(live, _mm512_set1_ps(-INFINITY), _mm512_mul_ps(hsum16x16(part), _mm512_set1_ps(post)));
                    float mnew = fmaxf(m[r], _mm512_reduce_max_ps(s));
                    float corr = expf(m[r] - mnew);
                    __m512 p = _mm512_maskz_mov_ps(live, vexp16(_mm512_sub_ps(s, _mm512_set1_ps(mnew))));
                    l[r] = l[r] * corr + _mm512_reduce_add_ps(p);
                    m[r] = mnew;
                    _mm512_storeu_ps(pb + r * KB, p);  /* P . V below, 4 rows per V load */
                    cr[r] = corr;
                    continue;
                }
#endif
                float mnew = m[r];
                for (long j = 0; j < nv; j++) {
                    float dot = 0.0f;
                    for (long i = 0; i < d; i++) dot += qr[i] * kf[j * d + i];
                    sc[j] = dot;
                    mnew = fmaxf(mnew, dot);
                }
                float corr = expf(m[r] - mnew), sum = 0.0f;
                for (long j = 0; j < nv; j++) { sc[j] = expf(sc[j] - mnew); sum += sc[j]; }
                l[r] = l[r] * corr + sum;
                m[r] = mnew;
                for (long i = 0; i < d; i++) {
                    float a = ar[i] * corr;
                    for (long j = 0; j < nv; j++) a += sc[j] * vf[j * d + i];
                    ar[i] = a;
                }
            }
#ifdef HAVE_AVX512
            if (vec) {
                long es = bf ? 2 : 4;
                for (long rg = r0; rg < nrow; rg += 4) {
                    long nr = nrow - rg < 4 ? nrow - rg : 4;
                    long nv = first + (rg + nr - 1) / g + 1 - kb;  /* the group's last row sees the most keys */
                    if (nv > nk) nv = nk;
                    switch (nr) {
                        case 1: pv_rows(1, acc + rg * d, cr + rg, pb + rg * KB, vrow, nv, d, bf); break;
                        case 2: pv_rows(2, acc + rg * d, cr + rg, pb + rg * KB, vrow, nv, d, bf); break;
                        case 3: pv_rows(3, acc + rg * d, cr + rg, pb + rg * KB, vrow, nv, d, bf); break;
                        default: pv_rows(4, acc + rg * d, cr + rg, pb + rg * KB, vrow, nv, d, bf); break;
                    }
                }
            }
#endif
            }
        }
        for (long hh = 0; hh < hpi; hh++) {
        HEAD_STATE
        for (long r = 0; r < nrow; r++) {
            long tok = qo_indptr[b] + s0 + r / g, head = h * g + r % g;
            float inv = 1.0f / l[r];
            for (long i = 0; i < d; i++) acc[r * d + i] *= inv;
            store_row(acc + r * d, AT(out, tok * out_stride + head * d, bf), d, bf);
        }
        }
#undef HEAD_STATE
        free(buf);
    }
    free(items);
}
"""
