"""TP=2 over torch.distributed (gloo, two real processes) on SmolLM2 equals the single-device forward (fp32)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from thunder.models import DEFAULT_MODEL, DenseCausalAttention, Tokenizer, build_model, load_model_dir
from thunder.runtime.tensor_parallel import even_split

PROMPT = "The three primary colours of light are red, green and"


def _logits(model: torch.nn.Module, ids: list[int]) -> torch.Tensor:
    x = torch.tensor(ids)
    hidden = model(x, torch.arange(len(ids)), DenseCausalAttention())
    return model.compute_logits(hidden)


def _tp_worker(rank: int, world: int, init: str, ids: list[int], out: str) -> None:
    import torch.distributed as dist

    from thunder.runtime.tensor_parallel import init_group, shard_model_

    torch.set_num_threads(1)
    init_group(rank, world, init, backend="gloo")
    try:
        model = build_model(load_model_dir(DEFAULT_MODEL), dtype=torch.float32)
        full_qkv = model.layers[0].qkv_proj.weight.numel()
        shard_model_(model, rank, world)
        assert model.layers[0].qkv_proj.weight.numel() < full_qkv  # really holds a shard
        logits = _logits(model, ids)
        if rank == 0:
            torch.save({"logits": logits, "heads": model.layers[0].num_heads}, out)
    finally:
        dist.destroy_process_group()


def test_even_split_is_contiguous_and_uneven_splits_put_the_extra_first() -> None:
    assert even_split(3, 2) == [(0, 2), (2, 3)]
    assert even_split(1536, 2) == [(0, 768), (768, 1536)]
    assert even_split(5, 5) == [(i, i + 1) for i in range(5)]
    with pytest.raises(ValueError, match="tp=4"):
        even_split(3, 4)


@pytest.mark.slow
def test_tp2_gloo_forward_equals_single_device(tmp_path: Path) -> None:
    model_dir = load_model_dir(DEFAULT_MODEL)
    ids = Tokenizer(model_dir).encode(PROMPT)
    reference = _logits(build_model(model_dir, dtype=torch.float32), ids)
    out = tmp_path / "rank0.pt"
    mp.spawn(_tp_worker, args=(2, f"file://{tmp_path / 'rendezvous'}", ids, str(out)), nprocs=2, join=True)
    got = torch.load(out)
    assert got["heads"] == 6  # rank 0 of TP=2 holds 2 of SmolLM2's 3 KV-head groups (6 of 9 query heads)
    torch.testing.assert_close(got["logits"], reference, rtol=1e-4, atol=1e-4)
    assert torch.equal(got["logits"].argmax(-1), reference.argmax(-1))
