"""PagedAttention (torch backend) against dense SDPA with GQA, shuffled pages and cached prefixes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kernels_ext import PagedAttention, allocate_paged_kv_cache, gather_paged_kv

HQ, HKV, D, PAGE = 6, 2, 16, 4


def dense_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """q [qo, Hq, D], k/v [kv, Hkv, D]: causal, bottom-right aligned, GQA by repeating KV heads."""
    qo, kv = q.shape[0], k.shape[0]
    group = q.shape[1] // k.shape[1]
    kr = k.repeat_interleave(group, dim=1).transpose(0, 1)
    vr = v.repeat_interleave(group, dim=1).transpose(0, 1)
    mask = torch.ones(qo, kv, dtype=torch.bool).tril(diagonal=kv - qo)
    return F.scaled_dot_product_attention(q.transpose(0, 1), kr, vr, attn_mask=mask).transpose(0, 1)


def build_batch(kv_lens: list[int], qo_lens: list[int], seed: int, num_layers: int = 2):
    """Random K/V per request written into a shuffled page table via `append`, plus q."""
    gen = torch.Generator().manual_seed(seed)
    pages_needed = [(n + PAGE - 1) // PAGE for n in kv_lens]
    num_pages = sum(pages_needed) + 3
    perm = torch.randperm(num_pages, generator=gen)[: sum(pages_needed)].to(torch.int32)
    kv_indptr = torch.tensor([0, *torch.cumsum(torch.tensor(pages_needed), 0).tolist()], dtype=torch.int32)
    last = torch.tensor([(n - 1) % PAGE + 1 for n in kv_lens], dtype=torch.int32)
    cache = allocate_paged_kv_cache(
        num_layers=num_layers, num_pages=num_pages, page_size=PAGE, num_kv_heads=HKV, head_dim=D,
        dtype=torch.float32,
    )  # fmt: skip
    ks = [torch.randn(num_layers, n, HKV, D, generator=gen) for n in kv_lens]
    vs = [torch.randn(num_layers, n, HKV, D, generator=gen) for n in kv_lens]
    qs = [torch.randn(n, HQ, D, generator=gen) for n in qo_lens]
    return cache, kv_indptr, perm, last, ks, vs, qs


def fill_cache(attn, cache, kv_indptr, perm, last, ks, vs, kv_lens, num_layers):
    # Write the whole KV through the wrapper's append (a "prefill" plan over every token).
    full = torch.tensor([0, *torch.cumsum(torch.tensor(kv_lens), 0).tolist()], dtype=torch.int32)
    attn.plan(full, kv_indptr, perm, last)
    for layer in range(num_layers):
        attn.append(layer, torch.cat([k[layer] for k in ks]), torch.cat([v[layer] for v in vs]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mixed_prefill_and_decode_match_dense_sdpa(seed: int) -> None:
    kv_lens = [1, 7, 9, 16, 3, 12]
    qo_lens = [1, 7, 4, 1, 3, 1]  # full prefill, chunk over a cached prefix, decode
    cache, kv_indptr, perm, last, ks, vs, qs = build_batch(kv_lens, qo_lens, seed)
    attn = PagedAttention(cache, num_qo_heads=HQ, backend="torch")
    fill_cache(attn, cache, kv_indptr, perm, last, ks, vs, kv_lens, 2)
    qo_indptr = torch.tensor([0, *torch.cumsum(torch.tensor(qo_lens), 0).tolist()], dtype=torch.int32)
    attn.plan(qo_indptr, kv_indptr, perm, last)
    for layer in range(2):
        out = attn.run(layer, torch.cat(qs))
        expected = torch.cat(
            [dense_reference(q, k[layer], v[layer]) for q, k, v in zip(qs, ks, vs, strict=True)]
        )
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_append_then_gather_round_trips_with_shuffled_pages() -> None:
    kv_lens = [5, 8, 1]
    cache, kv_indptr, perm, last, ks, vs, _ = build_batch(kv_lens, [1, 1, 1], seed=3)
    attn = PagedAttention(cache, num_qo_heads=HQ, backend="torch")
    fill_cache(attn, cache, kv_indptr, perm, last, ks, vs, kv_lens, 2)
    k, v = gather_paged_kv(cache, kv_indptr, perm, last)
    assert k.shape == (2, sum(kv_lens), HKV, D)
    torch.testing.assert_close(k, torch.cat(ks, dim=1))
    torch.testing.assert_close(v, torch.cat(vs, dim=1))
    k1, _ = gather_paged_kv(cache[1], kv_indptr, perm, last)
    torch.testing.assert_close(k1, torch.cat([x[1] for x in ks]))


def test_decode_appends_only_the_new_token() -> None:
    # Prefill 5 tokens, then decode one more: the cache must hold all 6 and attention must see them.
    gen = torch.Generator().manual_seed(4)
    cache = allocate_paged_kv_cache(
        num_layers=1, num_pages=4, page_size=PAGE, num_kv_heads=HKV, head_dim=D, dtype=torch.float32
    )
    attn = PagedAttention(cache, num_qo_heads=HQ, backend="torch")
    k = torch.randn(6, HKV, D, generator=gen)
    v = torch.randn(6, HKV, D, generator=gen)
    pages = torch.tensor([3, 1], dtype=torch.int32)
    indptr = torch.tensor([0, 2], dtype=torch.int32)
    attn.plan(torch.tensor([0, 5], dtype=torch.int32), indptr, pages, torch.tensor([1], dtype=torch.int32))
    attn.append(0, k[:5], v[:5])
    attn.plan(torch.tensor([0, 1], dtype=torch.int32), indptr, pages, torch.tensor([2], dtype=torch.int32))
    attn.append(0, k[5:], v[5:])
    q = torch.randn(1, HQ, D, generator=gen)
    torch.testing.assert_close(attn.run(0, q), dense_reference(q, k, v), atol=1e-5, rtol=1e-5)


def test_bfloat16_cache_is_close_to_float32_reference() -> None:
    kv_lens, qo_lens = [9, 4], [9, 1]
    cache, kv_indptr, perm, last, ks, vs, qs = build_batch(kv_lens, qo_lens, seed=5, num_layers=1)
    cache = cache.to(torch.bfloat16)
    attn = PagedAttention(cache, num_qo_heads=HQ, backend="torch")
    fill_cache(attn, cache, kv_indptr, perm, last, ks, vs, kv_lens, 1)
    attn.plan(torch.tensor([0, 9, 10], dtype=torch.int32), kv_indptr, perm, last)
    out = attn.run(0, torch.cat(qs).to(torch.bfloat16)).float()
    expected = torch.cat([dense_reference(q, k[0], v[0]) for q, k, v in zip(qs, ks, vs, strict=True)])
    torch.testing.assert_close(out, expected, atol=3e-2, rtol=3e-2)


def test_misuse_gives_clear_errors() -> None:
    cache = allocate_paged_kv_cache(
        num_layers=1, num_pages=2, page_size=PAGE, num_kv_heads=HKV, head_dim=D, dtype=torch.float32
    )
    with pytest.raises(ValueError, match="multiple of num_kv_heads"):
        PagedAttention(cache, num_qo_heads=5, backend="torch")
    attn = PagedAttention(cache, num_qo_heads=HQ, backend="torch")
    with pytest.raises(RuntimeError, match="before plan"):
        attn.run(0, torch.zeros(1, HQ, D))
    with pytest.raises(ValueError, match="CUDA"):
        PagedAttention(cache, num_qo_heads=HQ, backend="flashinfer")
    with pytest.raises(ValueError, match="expected"):
        PagedAttention(cache[0], num_qo_heads=HQ)


@pytest.mark.gpu
def test_flashinfer_matches_torch_backend_on_cuda() -> None:
    kv_lens, qo_lens = [1, 7, 9, 16, 3], [1, 7, 4, 1, 3]
    cache, kv_indptr, perm, last, ks, vs, qs = build_batch(kv_lens, qo_lens, seed=6, num_layers=1)
    qo_indptr = torch.tensor([0, *torch.cumsum(torch.tensor(qo_lens), 0).tolist()], dtype=torch.int32)
    outs = []
    for backend, device in (("torch", "cpu"), ("flashinfer", "cuda")):
        c = cache.to(device=device, dtype=torch.float16)
        attn = PagedAttention(c, num_qo_heads=HQ, backend=backend)
        fill_cache(attn, c, kv_indptr, perm, last, [k.to(c) for k in ks], [v.to(c) for v in vs], kv_lens, 1)
        attn.plan(qo_indptr, kv_indptr, perm, last)
        outs.append(attn.run(0, torch.cat(qs).to(c)).float().cpu())
    torch.testing.assert_close(outs[1], outs[0], atol=2e-2, rtol=2e-2)
