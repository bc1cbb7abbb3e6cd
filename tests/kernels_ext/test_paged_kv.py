"""CSR arithmetic, FlashInfer-compatible append, and dense gather of the NHD paged cache."""

from __future__ import annotations

import torch

from kernels_ext import (
    allocate_paged_kv_cache,
    append_paged_kv,
    gather_paged_kv,
    get_batch_indices_positions,
    get_seq_lens,
)


def test_seq_lens_follow_flashinfer_formula() -> None:
    indptr = torch.tensor([0, 1, 4, 4], dtype=torch.int32)
    last = torch.tensor([3, 2, 0], dtype=torch.int32)
    assert get_seq_lens(indptr, last, 16).tolist() == [3, 34, 0]


def test_batch_indices_positions_count_from_the_end_of_each_sequence() -> None:
    append_indptr = torch.tensor([0, 2, 3], dtype=torch.int32)
    batch, pos = get_batch_indices_positions(append_indptr, torch.tensor([5, 1]), nnz=3)
    assert batch.tolist() == [0, 0, 1]
    assert pos.tolist() == [3, 4, 0]
    assert batch.dtype == pos.dtype == torch.int32


def test_append_writes_token_t_to_page_t_div_s_slot_t_mod_s() -> None:
    cache = allocate_paged_kv_cache(
        num_layers=1, num_pages=5, page_size=2, num_kv_heads=1, head_dim=3, dtype=torch.float32
    )[0]
    indices = torch.tensor([4, 0, 2], dtype=torch.int32)  # one request, 3 pages, shuffled
    indptr = torch.tensor([0, 3], dtype=torch.int32)
    last = torch.tensor([1], dtype=torch.int32)  # 5 tokens
    key = torch.arange(15, dtype=torch.float32).view(5, 1, 3)
    batch, pos = get_batch_indices_positions(torch.tensor([0, 5]), torch.tensor([5]), nnz=5)
    append_paged_kv(key, -key, batch, pos, cache, indices, indptr, last)
    for t in range(5):
        page, slot = int(indices[t // 2]), t % 2
        assert torch.equal(cache[page, 0, slot], key[t])
        assert torch.equal(cache[page, 1, slot], -key[t])
    k, v = gather_paged_kv(cache, indptr, indices, last)
    assert torch.equal(k, key) and torch.equal(v, -key)
