"""Paged KV cache in FlashInfer's NHD layout: allocation, CSR arithmetic, append and gather.

Layout (one layer): ``[num_pages, 2, page_size, num_kv_heads, head_dim]``; ``[:, 0]`` is K, ``[:, 1]`` is V.
A whole model's cache is one tensor ``[num_layers, num_pages, 2, page_size, num_kv_heads, head_dim]`` so that
``cache[layer]`` is a contiguous per-layer cache exactly as FlashInfer expects.

Page table (CSR, all int32, host tensors are the natural input):

- ``kv_indptr[batch + 1]``: page offsets per request.
- ``kv_indices[kv_indptr[-1]]``: physical page ids, in any order.
- ``kv_last_page_len[batch]``: tokens in the last page, 1..page_size.

Token ``t`` of request ``i`` lives in page ``kv_indices[kv_indptr[i] + t // page_size]``, slot
``t % page_size``. These functions are the torch reference (and CPU implementation) of FlashInfer's
``append_paged_kv_cache`` / ``get_seq_lens`` and of a dense gather used for KV export and tests.
"""

from __future__ import annotations

import torch

__all__ = [
    "allocate_paged_kv_cache",
    "append_paged_kv",
    "gather_paged_kv",
    "get_batch_indices_positions",
    "get_seq_lens",
    "kv_token_slots",
    "write_kv_rows",
]


def allocate_paged_kv_cache(
    *,
    num_layers: int,
    num_pages: int,
    page_size: int,
    num_kv_heads: int,
    head_dim: int,
    dtype: torch.dtype,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Zeroed cache ``[num_layers, num_pages, 2, page_size, num_kv_heads, head_dim]``."""
    if num_pages < 1 or page_size < 1:
        raise ValueError(f"num_pages={num_pages}, page_size={page_size}: both must be >= 1")
    shape = (num_layers, num_pages, 2, page_size, num_kv_heads, head_dim)
    return torch.zeros(shape, dtype=dtype, device=device)


def get_seq_lens(kv_indptr: torch.Tensor, kv_last_page_len: torch.Tensor, page_size: int) -> torch.Tensor:
    """KV length per request: ``(pages - 1) * page_size + last_page_len`` (0 for a request with no pages)."""
    num_pages = (kv_indptr[1:] - kv_indptr[:-1]).to(torch.int64)
    lens = (num_pages - 1).clamp(min=0) * page_size + kv_last_page_len.to(torch.int64)
    return torch.where(num_pages > 0, lens, torch.zeros_like(lens))


def get_batch_indices_positions(
    append_indptr: torch.Tensor, seq_lens: torch.Tensor, nnz: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each appended token: its request index and its position in that request's KV.

    ``append_indptr[batch + 1]`` splits the ``nnz`` appended tokens per request; ``seq_lens[batch]`` are the
    KV lengths that already include them (FlashInfer's convention). Returns two int32 tensors ``[nnz]``.
    """
    append_lens = (append_indptr[1:] - append_indptr[:-1]).to(torch.int64)
    batch = torch.repeat_interleave(torch.arange(len(append_lens), device=append_indptr.device), append_lens)
    if batch.numel() != nnz:
        raise ValueError(f"append_indptr covers {batch.numel()} tokens but nnz={nnz}")
    start = seq_lens.to(torch.int64) - append_lens
    within = torch.arange(nnz, device=append_indptr.device) - append_indptr[:-1].to(torch.int64)[batch]
    return batch.to(torch.int32), (start[batch] + within).to(torch.int32)


def kv_token_slots(
    batch_indices: torch.Tensor,
    positions: torch.Tensor,
    kv_indptr: torch.Tensor,
    kv_indices: torch.Tensor,
    page_size: int,
) -> torch.Tensor:
    """Row of each token's K in ``cache[layer].view(-1, num_kv_heads, head_dim)``; its V row is ``+ page_size``.

    NOTE: the flat view merges (page, k/v, slot), so K of token t is row ``(page * 2) * page_size + slot``.
    """
    pos = positions.to(torch.int64)
    page_ptr = kv_indptr.to(torch.int64)[batch_indices.to(torch.int64)] + pos // page_size
    pages = kv_indices.to(torch.int64)[page_ptr]
    return pages * (2 * page_size) + pos % page_size


def append_paged_kv(
    append_key: torch.Tensor,
    append_value: torch.Tensor,
    batch_indices: torch.Tensor,
    positions: torch.Tensor,
    paged_kv_cache: torch.Tensor,
    kv_indices: torch.Tensor,
    kv_indptr: torch.Tensor,
    kv_last_page_len: torch.Tensor,
) -> None:
    """Write ragged ``append_key/append_value [nnz, Hkv, D]`` into one layer's cache ``[P, 2, S, Hkv, D]``.

    Same signature and semantics as ``flashinfer.append_paged_kv_cache`` (NHD): the page table must
    already include the appended tokens. ``kv_last_page_len`` is accepted for parity and not needed here.
    """
    del kv_last_page_len
    page_size = paged_kv_cache.shape[2]
    k_rows = kv_token_slots(batch_indices, positions, kv_indptr, kv_indices, page_size)
    write_kv_rows(paged_kv_cache, k_rows, append_key, append_value)


def write_kv_rows(
    paged_kv_cache: torch.Tensor, k_rows: torch.Tensor, key: torch.Tensor, value: torch.Tensor
) -> None:
    """Scatter ``key/value [nnz, Hkv, D]`` to precomputed K rows (see `kv_token_slots`) of one layer."""
    page_size = paged_kv_cache.shape[2]
    flat = paged_kv_cache.view(-1, *paged_kv_cache.shape[3:])
    flat.index_copy_(0, k_rows, key.to(flat.dtype))
    flat.index_copy_(0, k_rows + page_size, value.to(flat.dtype))


def gather_paged_kv(
    paged_kv_cache: torch.Tensor,
    kv_indptr: torch.Tensor,
    kv_indices: torch.Tensor,
    kv_last_page_len: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense ragged K and V ``[sum(seq_lens), Hkv, D]`` of every request, requests concatenated in order.

    Works on one layer ``[P, 2, S, Hkv, D]`` or on all layers ``[L, P, 2, S, Hkv, D]`` (then the result is
    ``[L, sum(seq_lens), Hkv, D]``).
    """
    page_size = paged_kv_cache.shape[-3]
    seq_lens = get_seq_lens(kv_indptr, kv_last_page_len, page_size)
    nnz = int(seq_lens.sum())
    append_indptr = torch.zeros(len(seq_lens) + 1, dtype=torch.int64)
    append_indptr[1:] = torch.cumsum(seq_lens, 0)
    batch, pos = get_batch_indices_positions(append_indptr, seq_lens, nnz)
    k_rows = kv_token_slots(batch, pos, kv_indptr, kv_indices, page_size)
    lead = paged_kv_cache.shape[:-5]
    flat = paged_kv_cache.reshape(*lead, -1, *paged_kv_cache.shape[-2:])
    dim = len(lead)
    return flat.index_select(dim, k_rows), flat.index_select(dim, k_rows + page_size)
