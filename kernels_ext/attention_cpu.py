"""Torch paged attention over the NHD cache: the CPU path and the oracle for the CUDA path.

Semantics copied from FlashInfer: GQA maps query head ``h`` to KV head ``h // (Hq // Hkv)``; the causal mask
is bottom-right aligned (query ``i`` of a request with ``qo_len`` queries and ``kv_len`` keys sees keys
``0 .. kv_len - qo_len + i``); ``sm_scale`` defaults to ``1 / sqrt(head_dim)``.

With the fused CPU kernels available (`kernels_ext.cpu_fused`, float32/bfloat16 caches), ``run`` is one C call
per layer that reads K/V from the pages in place for every request at once (decode and prefill, causal), and
``append`` one C copy. Otherwise (or with ``fused=False``, the oracle path):
decode requests (one query each) are batched: their pages are gathered with one ``index_select`` into a
padded ``[B, Lmax, Hkv, D]`` plus an additive length mask, and the ``G = Hq / Hkv`` query heads that share a
KV head are treated as ``G`` query rows of that head, so attention is two batched float32 matmuls and a
softmax (faster than SDPA's flash kernel for these tiny shapes, equally accurate). Prefill requests (several
queries) run one SDPA call each with ``enable_gqa``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kernels_ext import cpu_fused
from kernels_ext.paged_kv import get_batch_indices_positions, get_seq_lens, kv_token_slots, write_kv_rows

__all__ = ["CpuPagedAttention"]


@dataclass(frozen=True, slots=True, kw_only=True)
class _PrefillItem:
    q_start: int
    q_end: int
    k_rows: torch.Tensor  # [kv_len] int64
    mask: torch.Tensor | None  # [qo_len, kv_len] bool, None when qo_len == kv_len (plain causal)


@dataclass(frozen=True, slots=True, kw_only=True)
class _FusedPlan:
    nnz: int
    append_rows: torch.Tensor  # [nnz] int64: K row of each new token
    qo_indptr: torch.Tensor  # [B + 1] int32
    kv_indptr: torch.Tensor  # [B + 1] int32
    kv_indices: torch.Tensor  # int32
    kv_lens: torch.Tensor  # [B] int32


@dataclass(frozen=True, slots=True, kw_only=True)
class _CpuPlan:
    nnz: int
    append_rows: torch.Tensor  # [nnz] int64: K row of each new token
    decode_q: torch.Tensor  # [Bd] int64: query row of each decode request
    decode_rows: torch.Tensor  # [Bd * Hkv * Lmax] int64: K rows of cache.view(-1, D), padding -> row 0
    decode_v_rows: torch.Tensor  # the matching V rows
    decode_bias: torch.Tensor  # [Bd, 1, 1, Lmax] float32: 0 for real keys, -inf for padding
    pure_decode: bool  # every request decodes and queries are in request order: no gather of q needed
    decode_len: int  # Lmax
    prefill: tuple[_PrefillItem, ...]


class CpuPagedAttention:
    """Batch prefill + decode attention over a paged cache ``[L, P, 2, S, Hkv, D]`` in torch."""

    def __init__(
        self,
        kv_cache: torch.Tensor,
        *,
        num_qo_heads: int,
        sm_scale: float | None = None,
        fused: bool | None = None,
    ) -> None:
        """``fused``: use the C kernels (None: whenever `cpu_fused.supported` for the cache)."""
        self.kv_cache = kv_cache
        supported = cpu_fused.supported(kv_cache.dtype, kv_cache.device)
        if fused and not supported:
            raise ValueError(
                f"fused=True but the fused CPU kernels do not support a {kv_cache.dtype} cache here"
            )
        self.fused = supported if fused is None else fused
        self.page_size = kv_cache.shape[3]
        self.num_kv_heads = kv_cache.shape[4]
        self.head_dim = kv_cache.shape[5]
        if num_qo_heads % self.num_kv_heads:
            raise ValueError(
                f"num_qo_heads={num_qo_heads} is not a multiple of num_kv_heads={self.num_kv_heads} (GQA)"
            )
        self.num_qo_heads = num_qo_heads
        self.group = num_qo_heads // self.num_kv_heads
        self.sm_scale = sm_scale if sm_scale is not None else self.head_dim**-0.5
        self._plan: _CpuPlan | _FusedPlan | None = None

    def plan(
        self,
        qo_indptr: torch.Tensor,
        kv_indptr: torch.Tensor,
        kv_indices: torch.Tensor,
        kv_last_page_len: torch.Tensor,
    ) -> None:
        """Precompute every index the step's layers share. All inputs are int32 host tensors."""
        qo_indptr = qo_indptr.to(torch.int64)
        kv_indptr64 = kv_indptr.to(torch.int64)
        qo_lens = qo_indptr[1:] - qo_indptr[:-1]
        kv_lens = get_seq_lens(kv_indptr64, kv_last_page_len, self.page_size)
        if bool((kv_lens < qo_lens).any()):
            raise ValueError(f"kv lengths {kv_lens.tolist()} must include the new tokens {qo_lens.tolist()}")
        nnz = int(qo_indptr[-1])
        batch, pos = get_batch_indices_positions(qo_indptr, kv_lens, nnz)
        append_rows = kv_token_slots(batch, pos, kv_indptr64, kv_indices, self.page_size)
        if self.fused:
            self._plan = _FusedPlan(
                nnz=nnz,
                append_rows=append_rows,
                qo_indptr=qo_indptr.to(torch.int32).contiguous(),
                kv_indptr=kv_indptr.to(torch.int32).contiguous(),
                kv_indices=kv_indices.to(torch.int32).contiguous(),
                kv_lens=kv_lens.to(torch.int32).contiguous(),
            )
            return

        is_decode = qo_lens == 1
        dec = torch.nonzero(is_decode).flatten()
        decode_len = int(kv_lens[dec].max()) if dec.numel() else 0
        # Every decode request's KV rows, padded to decode_len (pad rows point at row 0 and are masked).
        d_pos = torch.arange(decode_len).expand(dec.numel(), decode_len)
        d_mask = d_pos < kv_lens[dec, None]
        d_batch = dec[:, None].expand_as(d_pos)
        d_rows = kv_token_slots(d_batch[d_mask], d_pos[d_mask], kv_indptr64, kv_indices, self.page_size)
        token_rows = torch.zeros(d_pos.shape, dtype=torch.int64)
        token_rows[d_mask] = d_rows
        # NOTE: gathered per (request, head, position) from the cache viewed as [-1, head_dim], so K and V
        # come out as [B, Hkv, Lmax, D] directly: no transposing copy before the matmuls.
        heads = torch.arange(self.num_kv_heads)
        decode_rows = token_rows[:, None, :] * self.num_kv_heads + heads[None, :, None]

        prefill = []
        for i in torch.nonzero(~is_decode).flatten().tolist():
            q_len, kv_len = int(qo_lens[i]), int(kv_lens[i])
            if q_len == 0:
                continue
            rows = kv_token_slots(
                torch.full((kv_len,), i), torch.arange(kv_len), kv_indptr64, kv_indices, self.page_size
            )
            mask = None
            if q_len != kv_len:
                mask = torch.ones(q_len, kv_len, dtype=torch.bool).tril(diagonal=kv_len - q_len)
            start = int(qo_indptr[i])
            prefill.append(_PrefillItem(q_start=start, q_end=start + q_len, k_rows=rows, mask=mask))

        self._plan = _CpuPlan(
            nnz=nnz,
            append_rows=append_rows,
            decode_q=qo_indptr[dec],
            decode_rows=decode_rows.flatten().to(self.kv_cache.device),
            decode_v_rows=(decode_rows.flatten() + self.page_size * self.num_kv_heads).to(
                self.kv_cache.device
            ),
            decode_bias=torch.zeros(d_mask.shape, dtype=torch.float32, device=self.kv_cache.device)
            .masked_fill_(~d_mask.to(self.kv_cache.device), float("-inf"))
            .view(dec.numel(), 1, 1, decode_len),
            pure_decode=bool(is_decode.all()),
            decode_len=decode_len,
            prefill=tuple(prefill),
        )

    def _require_plan(self) -> _CpuPlan | _FusedPlan:
        if self._plan is None:
            raise RuntimeError("PagedAttention.run/append called before plan(); call plan() once per step")
        return self._plan

    def append(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> None:
        """Write the step's new ``key/value [nnz, Hkv, D]`` into layer ``layer``."""
        plan = self._require_plan()
        cache = self.kv_cache[layer]
        if isinstance(plan, _FusedPlan) and key.dtype == value.dtype == cache.dtype:
            cpu_fused.write_kv(cache, key, value, plan.append_rows, self.page_size)
        else:
            write_kv_rows(cache, plan.append_rows, key, value)

    def run(self, layer: int, q: torch.Tensor) -> torch.Tensor:
        """Attention of ``q [nnz, Hq, D]`` over layer ``layer``'s cache; returns ``[nnz, Hq, D]``."""
        plan = self._require_plan()
        if q.shape[0] != plan.nnz:
            raise ValueError(f"q has {q.shape[0]} tokens but plan() was given {plan.nnz}")
        if isinstance(plan, _FusedPlan):
            out = cpu_fused.paged_attention(
                q.to(self.kv_cache.dtype), self.kv_cache[layer], plan.qo_indptr, plan.kv_indptr,
                plan.kv_indices, plan.kv_lens, self.sm_scale,
            )  # fmt: skip
            return out.to(q.dtype)
        cache = self.kv_cache[layer]
        flat = cache.view(-1, self.num_kv_heads, self.head_dim)
        hkv, g, d, s = self.num_kv_heads, self.group, self.head_dim, self.page_size
        out = q if plan.pure_decode else torch.empty_like(q)
        if plan.decode_q.numel():
            b, length = plan.decode_q.numel(), plan.decode_len
            qd = (q if plan.pure_decode else q.index_select(0, plan.decode_q)).reshape(b, hkv, g, d)
            vec = cache.view(-1, d)
            k = vec.index_select(0, plan.decode_rows).view(b, hkv, length, d)
            v = vec.index_select(0, plan.decode_v_rows).view(b, hkv, length, d)
            # NOTE: scores, softmax and the weighted sum in float32 (as SDPA's kernels accumulate): bf16
            # scores of magnitude ~20 would carry ~0.1 absolute error into the softmax.
            scores = (
                torch.matmul(qd.float(), k.float().transpose(-1, -2))
                .mul_(self.sm_scale)
                .add_(plan.decode_bias)
            )
            o = torch.matmul(scores.softmax(dim=-1), v.float()).to(q.dtype).reshape(b, hkv * g, d)
            if plan.pure_decode:
                return o
            out.index_copy_(0, plan.decode_q, o)
        for item in plan.prefill:
            qp = q[item.q_start : item.q_end].transpose(0, 1).unsqueeze(0)
            k = flat.index_select(0, item.k_rows).transpose(0, 1).unsqueeze(0)
            v = flat.index_select(0, item.k_rows + s).transpose(0, 1).unsqueeze(0)
            o = F.scaled_dot_product_attention(
                qp,
                k,
                v,
                attn_mask=item.mask,
                is_causal=item.mask is None,
                scale=self.sm_scale,
                enable_gqa=True,
            )
            out[item.q_start : item.q_end] = o[0].transpose(0, 1)
        return out
