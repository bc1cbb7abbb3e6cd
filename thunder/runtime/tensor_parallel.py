"""Tensor parallelism inside a replica group (Megatron-style) over `torch.distributed` (gloo on CPU, NCCL on CUDA).

`shard_model_(model, rank, world)` cuts every decoder layer of a loaded `LlamaForCausalLM` in place:

- attention is split by KV-head groups (each rank keeps whole GQA groups: its KV heads and the query heads
  that read them), so ``qkv_proj`` is column-parallel and ``o_proj`` row-parallel;
- the MLP is split by intermediate columns: ``gate_up_proj`` column-parallel, ``down_proj`` row-parallel;
- each row-parallel output is summed across ranks with one ``all_reduce`` (bias added once, after it) — the
  two all-reduces per layer that the planner's cost model charges for TP.

Splits may be uneven (SmolLM2 has 3 KV heads: TP=2 gives ranks 2 and 1), so any TP degree up to the number of
KV heads works. Embedding, final norm and LM head stay replicated: every rank ends with the full hidden state.

`tp_runner` builds one rank's share of a (pipeline stage's) model plus a `ModelRunner` whose paged KV cache
holds only this rank's KV heads; `kv_head_range` says which ones, so a KV handoff can be cut and re-assembled
independently of how either side is split.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from thunder.engine.model_runner import ModelRunner
from thunder.models import LlamaForCausalLM, ModelConfig, build_model
from thunder.models.llama import Linear, LlamaDecoderLayer

__all__ = [
    "RowParallelLinear",
    "even_split",
    "init_group",
    "kv_head_range",
    "shard_model_",
    "tp_runner",
]


def even_split(total: int, world: int) -> list[tuple[int, int]]:
    """``[start, end)`` of each of ``world`` near-equal contiguous parts of ``range(total)`` (larger first)."""
    if not 1 <= world <= total:
        raise ValueError(f"tp={world}: must be between 1 and {total} (the dimension being split)")
    base, extra = divmod(total, world)
    bounds, start = [], 0
    for r in range(world):
        end = start + base + (r < extra)
        bounds.append((start, end))
        start = end
    return bounds


def kv_head_range(cfg: ModelConfig, rank: int, world: int) -> tuple[int, int]:
    """``[start, end)`` of the KV heads that TP rank ``rank`` of ``world`` holds (see `shard_model_`)."""
    return even_split(cfg.num_key_value_heads, world)[rank]


def init_group(
    rank: int, world: int, init_method: str, *, backend: str | None = None, timeout_s: float = 300.0
) -> None:
    """Join this process's TP group: gloo on CPU, NCCL when CUDA is available (or `backend`).

    NOTE: a process belongs to at most one TP group (torch.distributed's default group); it blocks until
    all ``world`` ranks have joined, so start the ranks concurrently and call this off any event loop.
    """
    import datetime

    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    dist.init_process_group(
        backend,
        init_method=init_method,
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=timeout_s),
    )


def tp_runner(
    model_dir: Path,
    *,
    layer_range: tuple[int, int],
    dtype: torch.dtype,
    device: str,
    num_pages: int,
    page_size: int,
    rank: int = 0,
    world: int = 1,
) -> ModelRunner:
    """Layers ``layer_range`` of the model, sharded for TP rank ``rank`` of ``world`` (the process group must
    be initialised when ``world > 1``), with a paged KV cache of this rank's KV heads only."""
    model = build_model(model_dir, dtype=dtype, device=device, layer_range=layer_range)
    if world > 1:
        shard_model_(model, rank, world)
        cfg = model.config
        kv_lo, kv_hi = kv_head_range(cfg, rank, world)
        group_size = cfg.num_attention_heads // cfg.num_key_value_heads
        # NOTE: the runner sizes its KV cache and attention from `model.config`; head_dim stays explicit.
        model.config = dataclasses.replace(
            cfg, num_key_value_heads=kv_hi - kv_lo, num_attention_heads=(kv_hi - kv_lo) * group_size
        )
    return ModelRunner(model, num_pages=num_pages, page_size=page_size, device=device)


class RowParallelLinear(nn.Module):
    """``all_reduce(x @ W_shard.T) + bias``: this rank's input columns of a linear layer, summed over ranks."""

    def __init__(
        self, full: nn.Linear, cols: list[tuple[int, int]], group: dist.ProcessGroup | None = None
    ) -> None:
        super().__init__()
        w = full.weight.data
        self.weight = nn.Parameter(
            torch.cat([w[:, a:b] for a, b in cols], dim=1).contiguous(), requires_grad=False
        )
        self.bias = None if full.bias is None else nn.Parameter(full.bias.data.clone(), requires_grad=False)
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x @ self.weight.T
        dist.all_reduce(out, group=self.group)
        return out if self.bias is None else out + self.bias


def _column_slice(full: nn.Linear, rows: list[tuple[int, int]]) -> Linear:
    """A linear layer holding only output rows ``rows`` of ``full`` (column parallel; pre-packed if it was)."""
    w = torch.cat([full.weight.data[a:b] for a, b in rows])
    out = Linear(w.shape[1], w.shape[0], full.bias is not None, dtype=w.dtype, device=w.device)
    out.weight.data.copy_(w)
    if full.bias is not None:
        out.bias.data.copy_(torch.cat([full.bias.data[a:b] for a, b in rows]))
    out.requires_grad_(False)
    if getattr(full, "_packed", None) is not None:
        out.prepack()
    return out


@torch.inference_mode()
def shard_model_(
    model: LlamaForCausalLM, rank: int, world: int, group: dist.ProcessGroup | None = None
) -> None:
    """Keep this rank's shard of every decoder layer of ``model`` (in place); see the module docstring."""
    cfg = model.config
    d = cfg.head_dim
    group_size = cfg.num_attention_heads // cfg.num_key_value_heads
    kv_lo, kv_hi = even_split(cfg.num_key_value_heads, world)[rank]
    q_lo, q_hi = kv_lo * group_size, kv_hi * group_size
    ff_lo, ff_hi = even_split(cfg.intermediate_size, world)[rank]
    q_rows = (q_lo * d, q_hi * d)
    k_rows = (cfg.q_size + kv_lo * d, cfg.q_size + kv_hi * d)
    v_rows = (cfg.q_size + cfg.kv_size + kv_lo * d, cfg.q_size + cfg.kv_size + kv_hi * d)
    for layer in model.layers:
        assert isinstance(layer, LlamaDecoderLayer)
        layer.qkv_proj = _column_slice(layer.qkv_proj, [q_rows, k_rows, v_rows])
        layer.o_proj = RowParallelLinear(layer.o_proj, [q_rows], group)  # type: ignore[assignment]
        inter = cfg.intermediate_size
        layer.gate_up_proj = _column_slice(
            layer.gate_up_proj, [(ff_lo, ff_hi), (inter + ff_lo, inter + ff_hi)]
        )
        layer.down_proj = RowParallelLinear(layer.down_proj, [(ff_lo, ff_hi)], group)  # type: ignore[assignment]
        layer.num_heads, layer.num_kv_heads = q_hi - q_lo, kv_hi - kv_lo
        layer.qk_size = (q_hi - q_lo) * d + (kv_hi - kv_lo) * d
        layer.intermediate = ff_hi - ff_lo
