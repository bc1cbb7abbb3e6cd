"""Fused CPU kernels against their torch oracles: paged attention (GQA, shuffled pages, chunked prefill, long
queries and keys across several blocks), add+RMSNorm, SiLU-mul, RoPE and KV append, in float32 and bfloat16."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kernels_ext import PagedAttention, allocate_paged_kv_cache, cpu_fused, write_kv_rows
from tests.kernels_ext.test_attention import dense_reference
from thunder.models.rope import RotaryEmbedding

pytestmark = pytest.mark.skipif(
    not cpu_fused.available(), reason="no C compiler: fused CPU kernels not built"
)

DTYPES = [torch.float32, torch.bfloat16]
TOL = {torch.float32: 2e-5, torch.bfloat16: 2e-2}


def paged_batch(
    kv_lens: list[int], qo_lens: list[int], hq: int, hkv: int, d: int, page: int, dtype, seed: int
):
    """A shuffled page table holding random K/V for every request, and the dense K/V and q it holds."""
    gen = torch.Generator().manual_seed(seed)
    need = [-(-n // page) for n in kv_lens]
    num_pages = sum(need) + 5
    perm = torch.randperm(num_pages, generator=gen)[: sum(need)].to(torch.int32)
    kv_indptr = torch.tensor([0, *torch.tensor(need).cumsum(0).tolist()], dtype=torch.int32)
    last = torch.tensor([(n - 1) % page + 1 for n in kv_lens], dtype=torch.int32)
    cache = allocate_paged_kv_cache(
        num_layers=1, num_pages=num_pages, page_size=page, num_kv_heads=hkv, head_dim=d, dtype=dtype
    )
    ks = [torch.randn(n, hkv, d, generator=gen).to(dtype) for n in kv_lens]
    vs = [torch.randn(n, hkv, d, generator=gen).to(dtype) for n in kv_lens]
    q = torch.randn(sum(qo_lens), hq, d, generator=gen).to(dtype)
    oracle = PagedAttention(cache, num_qo_heads=hq, backend="torch", fused=False)
    full = torch.tensor([0, *torch.tensor(kv_lens).cumsum(0).tolist()], dtype=torch.int32)
    oracle.plan(full, kv_indptr, perm, last)
    oracle.append(0, torch.cat(ks), torch.cat(vs))
    qo_indptr = torch.tensor([0, *torch.tensor(qo_lens).cumsum(0).tolist()], dtype=torch.int32)
    return cache, (qo_indptr, kv_indptr, perm, last), ks, vs, q


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("hq", "hkv", "d", "page"),
    [(9, 3, 64, 16), (6, 2, 16, 4), (4, 4, 24, 8)],  # GQA 3:1 and 3:1, MHA with a non-AVX head_dim
)
def test_paged_attention_matches_oracle_and_dense_sdpa(dtype, hq: int, hkv: int, d: int, page: int) -> None:
    # decodes, full prefills, a chunk over a cached prefix, and queries/keys spanning several 16-blocks
    kv_lens = [1, 7, 9, 16, 3, 12, 40, 70, 33, 130]
    qo_lens = [1, 7, 4, 1, 3, 1, 40, 37, 1, 50]
    cache, table, ks, vs, q = paged_batch(kv_lens, qo_lens, hq, hkv, d, page, dtype, seed=hq + d)
    fused = PagedAttention(cache, num_qo_heads=hq, backend="torch", fused=True)
    oracle = PagedAttention(cache, num_qo_heads=hq, backend="torch", fused=False)
    for attn in (fused, oracle):
        attn.plan(*table)
    got, want = fused.run(0, q), oracle.run(0, q)
    assert got.dtype == dtype and got.shape == q.shape
    torch.testing.assert_close(got.float(), want.float(), atol=TOL[dtype], rtol=TOL[dtype])
    qs = q.float().split(qo_lens)
    dense = torch.cat([dense_reference(a, k.float(), v.float()) for a, k, v in zip(qs, ks, vs, strict=True)])
    torch.testing.assert_close(got.float(), dense, atol=TOL[dtype], rtol=TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("num_requests", [1, 2, 24])
def test_decode_attention_with_few_and_many_requests(dtype, num_requests: int) -> None:
    # few work items: one per (request, kv head); many: one per request covering every kv head (the kernel
    # switches at 4 items per thread), with blocks prefetched ahead
    kv_lens = [17 + 13 * i % 90 for i in range(num_requests)]
    cache, table, ks, vs, q = paged_batch(kv_lens, [1] * num_requests, 9, 3, 64, 16, dtype, seed=num_requests)
    fused = PagedAttention(cache, num_qo_heads=9, backend="torch", fused=True)
    fused.plan(*table)
    got = fused.run(0, q)
    dense = torch.cat(
        [dense_reference(a, k.float(), v.float()) for a, k, v in zip(q.float().split(1), ks, vs, strict=True)]
    )
    torch.testing.assert_close(got.float(), dense, atol=TOL[dtype], rtol=TOL[dtype])


def test_paged_attention_reads_strided_query_rows() -> None:
    cache, table, _, _, q = paged_batch([5, 20], [1, 20], 6, 2, 16, 4, torch.float32, seed=1)
    fused = PagedAttention(cache, num_qo_heads=6, backend="torch", fused=True)
    fused.plan(*table)
    wide = torch.cat([q, torch.randn(q.shape[0], 4, 16)], dim=1)  # q as the first 6 heads of 10
    torch.testing.assert_close(fused.run(0, wide[:, :6]), fused.run(0, q.contiguous()))


@pytest.mark.parametrize("dtype", DTYPES)
def test_append_writes_the_same_cache_as_the_oracle(dtype) -> None:
    cache, table, _, _, _ = paged_batch([6, 9], [6, 9], 4, 2, 16, 4, dtype, seed=2)
    gen = torch.Generator().manual_seed(3)
    qkv = torch.randn(15, 8, 16, generator=gen).to(dtype)  # k = heads 4:6, v = heads 6:8 (strided views)
    fused = PagedAttention(cache.clone(), num_qo_heads=4, backend="torch", fused=True)
    oracle = PagedAttention(cache.clone(), num_qo_heads=4, backend="torch", fused=False)
    for attn in (fused, oracle):
        attn.plan(*table)
        attn.append(0, qkv[:, 4:6], qkv[:, 6:8])
    assert torch.equal(fused.kv_cache, oracle.kv_cache)
    rows = torch.tensor([3, 0, 9], dtype=torch.int64)
    a, b = cache[0].clone(), cache[0].clone()
    cpu_fused.write_kv(a, qkv[:3, 4:6], qkv[:3, 6:8], rows, 4)
    write_kv_rows(b, rows, qkv[:3, 4:6], qkv[:3, 6:8])
    assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_rms_norm_silu_mul_and_rope_match_torch(dtype) -> None:
    gen = torch.Generator().manual_seed(4)
    x, delta = (torch.randn(37, 96, generator=gen).to(dtype) for _ in range(2))
    w = torch.randn(96, generator=gen).to(dtype)
    tol = {"atol": TOL[dtype], "rtol": TOL[dtype]}
    assert torch.equal(cpu_fused.add_(x.clone(), delta), x + delta)
    h = x.clone()
    out = cpu_fused.add_rms_norm(h, delta, w, 1e-5)
    assert torch.equal(h, x + delta)
    torch.testing.assert_close(out, F.rms_norm(x + delta, (96,), w, 1e-5), **tol)
    torch.testing.assert_close(cpu_fused.add_rms_norm(x, None, w, 1e-6), F.rms_norm(x, (96,), w, 1e-6), **tol)

    gate_up = (torch.randn(37, 2 * 40, generator=gen) * 4).to(dtype)
    want = F.silu(gate_up[:, :40]) * gate_up[:, 40:]
    torch.testing.assert_close(cpu_fused.silu_mul(gate_up), want, **tol)

    rope = RotaryEmbedding(head_dim=16, theta=10000.0, scaling=None, max_positions=64, dtype=dtype)
    qkv = torch.randn(37, 7 * 16, generator=gen).to(dtype)
    pos = torch.randint(0, 64, (37,), generator=gen)
    cos, sin = rope.tables(pos)
    want = RotaryEmbedding.apply(qkv[:, : 5 * 16].view(37, 5, 16), cos, sin)
    got = qkv.clone()
    cpu_fused.rope_(got, 5, rope.cos, rope.sin_signed, pos)
    torch.testing.assert_close(got[:, : 5 * 16].view(37, 5, 16), want, **tol)
    assert torch.equal(got[:, 5 * 16 :], qkv[:, 5 * 16 :])  # heads past num_heads untouched


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(64, 49152), (3, 17), (5, 15), (2, 16)])
def test_argmax_rows_matches_torch_max_with_ties_nan_and_inf(dtype, shape: tuple[int, int]) -> None:
    gen = torch.Generator().manual_seed(shape[1])
    x = torch.randn(*shape, generator=gen).to(dtype)
    assert torch.equal(cpu_fused.argmax_rows(x), x.max(dim=-1).indices)
    ties = torch.randint(0, 3, shape, generator=gen).to(dtype)  # many equal maxima: the first one wins
    assert torch.equal(cpu_fused.argmax_rows(ties), ties.max(dim=-1).indices)
    odd = torch.randn(4, shape[1] + 3, generator=gen).to(dtype)
    odd[1, 2], odd[1, -1] = float("nan"), float("nan")  # the first NaN wins, as in torch.max
    odd[2] = float("-inf")
    odd[3, -1] = float("inf")
    assert (
        cpu_fused.argmax_rows(odd).tolist()
        == odd.max(dim=-1).indices.tolist()
        == [int(odd[0].argmax()), 2, 0, shape[1] + 2]
    )
    strided = torch.randn(6, 40, generator=gen).to(dtype)[:, 3:35]
    assert torch.equal(cpu_fused.argmax_rows(strided), strided.max(dim=-1).indices)


def test_kernels_reject_what_they_cannot_run() -> None:
    with pytest.raises(ValueError, match="float32/bfloat16"):
        cpu_fused.silu_mul(torch.zeros(2, 4, dtype=torch.float16))
    cache = allocate_paged_kv_cache(
        num_layers=1, num_pages=2, page_size=4, num_kv_heads=2, head_dim=16, dtype=torch.float16
    )
    with pytest.raises(ValueError, match="fused=True"):
        PagedAttention(cache, num_qo_heads=4, backend="torch", fused=True)
