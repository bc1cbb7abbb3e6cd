"""FlashInfer paged attention (CUDA only). ``flashinfer`` is imported lazily, on first construction.

NOTE: written against flashinfer-python 0.7.2 (see shared/reference/flashinfer-api.md); it needs a GPU with
sm75+ and JIT-compiles kernels on first use. The CPU implementation in `attention_cpu` is its test oracle.
"""

from __future__ import annotations

import functools
from types import ModuleType

import torch

__all__ = ["FlashInferPagedAttention", "flashinfer_module"]


@functools.cache
def flashinfer_module() -> ModuleType:
    """Import flashinfer once; raise a clear error naming the fix when it is missing."""
    try:
        import flashinfer
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise ImportError(
            "the CUDA attention path needs flashinfer: pip install 'flashinfer-python>=0.2' "
            "(or use backend='torch')"
        ) from exc
    return flashinfer


class FlashInferPagedAttention:
    """`BatchPrefillWithPagedKVCacheWrapper` for steps with prefill, `BatchDecode…` for pure-decode steps."""

    def __init__(
        self,
        kv_cache: torch.Tensor,
        *,
        num_qo_heads: int,
        sm_scale: float | None = None,
        workspace_bytes: int = 128 << 20,
    ) -> None:
        fi = flashinfer_module()
        self.kv_cache = kv_cache
        self.page_size = kv_cache.shape[3]
        self.num_kv_heads = kv_cache.shape[4]
        self.head_dim = kv_cache.shape[5]
        self.num_qo_heads = num_qo_heads
        self.sm_scale = sm_scale if sm_scale is not None else self.head_dim**-0.5
        device = kv_cache.device
        self._prefill = fi.BatchPrefillWithPagedKVCacheWrapper(
            torch.empty(workspace_bytes, dtype=torch.uint8, device=device), "NHD"
        )
        self._decode = fi.BatchDecodeWithPagedKVCacheWrapper(
            torch.empty(workspace_bytes, dtype=torch.uint8, device=device), "NHD", use_tensor_cores=True
        )
        self._active: object | None = None
        self._table: tuple[torch.Tensor, ...] = ()

    def plan(
        self,
        qo_indptr: torch.Tensor,
        kv_indptr: torch.Tensor,
        kv_indices: torch.Tensor,
        kv_last_page_len: torch.Tensor,
    ) -> None:
        fi = flashinfer_module()
        device = self.kv_cache.device
        dtype = self.kv_cache.dtype
        shape = (self.num_qo_heads, self.num_kv_heads, self.head_dim, self.page_size)
        qo_lens = qo_indptr[1:] - qo_indptr[:-1]
        if bool((qo_lens == 1).all()):
            self._decode.plan(
                kv_indptr, kv_indices, kv_last_page_len, *shape,
                q_data_type=dtype, kv_data_type=dtype, sm_scale=self.sm_scale,
            )  # fmt: skip
            self._active = self._decode
        else:
            self._prefill.plan(
                qo_indptr, kv_indptr, kv_indices, kv_last_page_len, *shape,
                causal=True, q_data_type=dtype, kv_data_type=dtype, sm_scale=self.sm_scale,
            )  # fmt: skip
            self._active = self._prefill
        qo_d, indptr_d, indices_d, last_d = (
            t.to(device=device, dtype=torch.int32, non_blocking=True)
            for t in (qo_indptr, kv_indptr, kv_indices, kv_last_page_len)
        )
        seq_lens = fi.get_seq_lens(indptr_d, last_d, self.page_size)
        nnz = int(qo_indptr[-1])
        batch_indices, positions = fi.get_batch_indices_positions(qo_d, seq_lens, nnz)
        self._table = (batch_indices, positions, indices_d, indptr_d, last_d)

    def append(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> None:
        if not self._table:
            raise RuntimeError("PagedAttention.append called before plan(); call plan() once per step")
        batch_indices, positions, indices_d, indptr_d, last_d = self._table
        flashinfer_module().append_paged_kv_cache(
            key, value, batch_indices, positions, self.kv_cache[layer], indices_d, indptr_d, last_d,
            kv_layout="NHD",
        )  # fmt: skip

    def run(self, layer: int, q: torch.Tensor) -> torch.Tensor:
        if self._active is None:
            raise RuntimeError("PagedAttention.run called before plan(); call plan() once per step")
        return self._active.run(q, self.kv_cache[layer])  # type: ignore[attr-defined]
