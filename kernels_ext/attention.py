"""`PagedAttention`: one wrapper per engine; ``plan()`` once per step, ``append()``/``run()`` per layer.

Backends: ``"flashinfer"`` (CUDA, lazily imported) and ``"torch"`` (any device; the CPU path and the oracle).
``"auto"`` picks flashinfer for a CUDA cache and torch otherwise.
"""

from __future__ import annotations

from typing import Literal, Protocol

import torch

from kernels_ext.attention_cpu import CpuPagedAttention

__all__ = ["AttentionBackend", "PagedAttention"]

AttentionBackend = Literal["auto", "torch", "flashinfer"]


class _Impl(Protocol):
    def plan(
        self, qo_indptr: torch.Tensor, kv_indptr: torch.Tensor, kv_indices: torch.Tensor,
        kv_last_page_len: torch.Tensor,
    ) -> None: ...  # fmt: skip

    def append(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> None: ...

    def run(self, layer: int, q: torch.Tensor) -> torch.Tensor: ...


class PagedAttention:
    """Batched prefill/decode attention over a paged KV cache.

    Parameters
    ----------
    kv_cache : torch.Tensor
        ``[num_layers, num_pages, 2, page_size, num_kv_heads, head_dim]`` (FlashInfer NHD per layer).
    num_qo_heads : int
        Query heads; a multiple of ``num_kv_heads``.
    sm_scale : float, optional
        Softmax scale; defaults to ``1 / sqrt(head_dim)``.
    backend : "auto" | "torch" | "flashinfer"
    fused : bool, optional
        torch backend only: the fused C kernels (`kernels_ext.cpu_fused`); None uses them where supported,
        False keeps the pure-torch oracle.

    Per step: ``plan(qo_indptr, kv_indptr, kv_indices, kv_last_page_len)`` with int32 host tensors, where the
    page table already includes this step's new tokens and ``qo_indptr[batch + 1]`` splits the step's
    ``nnz`` new tokens per request. Then per layer: ``append(layer, k, v)`` with ``[nnz, Hkv, D]`` and
    ``run(layer, q)`` with ``q [nnz, Hq, D]`` -> ``[nnz, Hq, D]`` (causal, bottom-right aligned).
    """

    def __init__(
        self,
        kv_cache: torch.Tensor,
        *,
        num_qo_heads: int,
        sm_scale: float | None = None,
        backend: AttentionBackend = "auto",
        fused: bool | None = None,
    ) -> None:
        if kv_cache.dim() != 6:
            raise ValueError(
                f"kv_cache has shape {tuple(kv_cache.shape)}; expected "
                "[num_layers, num_pages, 2, page_size, num_kv_heads, head_dim]"
            )
        if backend == "auto":
            backend = "flashinfer" if kv_cache.is_cuda else "torch"
        self.backend = backend
        self.kv_cache = kv_cache
        self._impl: _Impl
        if backend == "torch":
            self._impl = CpuPagedAttention(
                kv_cache, num_qo_heads=num_qo_heads, sm_scale=sm_scale, fused=fused
            )
        elif backend == "flashinfer":
            if not kv_cache.is_cuda:
                raise ValueError("backend='flashinfer' needs a CUDA kv_cache; use backend='torch' on CPU")
            from kernels_ext.attention_flashinfer import FlashInferPagedAttention

            self._impl = FlashInferPagedAttention(kv_cache, num_qo_heads=num_qo_heads, sm_scale=sm_scale)
        else:
            raise ValueError(f"backend={backend!r}: choose 'auto', 'torch' or 'flashinfer'")

    def plan(
        self,
        qo_indptr: torch.Tensor,
        kv_indptr: torch.Tensor,
        kv_indices: torch.Tensor,
        kv_last_page_len: torch.Tensor,
    ) -> None:
        self._impl.plan(qo_indptr, kv_indptr, kv_indices, kv_last_page_len)

    def append(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> None:
        self._impl.append(layer, key, value)

    def run(self, layer: int, q: torch.Tensor) -> torch.Tensor:
        return self._impl.run(layer, q)
