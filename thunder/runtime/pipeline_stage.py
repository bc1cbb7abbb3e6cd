"""`StageActor`: one device's share of a replica group — a pipeline stage's layers, or one TP rank of them.

A stage with TP degree ``tp`` is ``tp`` `StageActor`s (one per device, each its own OS process) that joined one
torch.distributed group (gloo on CPU, NCCL on CUDA): each holds its KV heads' share of every layer of the stage
(`tensor_parallel.tp_runner`) and its own paged KV cache for them; the two all-reduces per layer keep them in
lockstep, and every rank ends a step with the full hidden state.

One step (`StageForward`): the leader asks every rank of stage 0; rank 0 of stage k asks every rank of stage
k+1 with its hidden states ``[T, hidden]`` (a raw tensor frame) and returns rank 0's answer; the last stage's
rank 0 returns the sampling rows' float32 logits. Other ranks answer None.

KV handoff: `ReadKV` / `WriteKV` move one request's dense KV of this actor's layers and KV heads, so the
leader can assemble or cut a page-size- and split-independent ``[L, 2, T, Hkv, D]`` tensor.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any

import msgspec

from actors import Actor, handler, message
from thunder.engine.model_runner import StepInputs

__all__ = [
    "STAGE_ACTOR",
    "GetStageInfo",
    "LinkStage",
    "ReadKV",
    "StageActor",
    "StageForward",
    "StageInfo",
    "WriteKV",
]

STAGE_ACTOR = "thunder.runtime.pipeline_stage:StageActor"


@message
class StageForward(msgspec.Struct, frozen=True):
    """Run one step through this stage and the ``downstream`` ones; rank 0 of the last stage replies with the
    sampling rows' logits (None when no row samples, and from every other rank)."""

    inputs: StepInputs
    hidden: Any  # torch.Tensor [T, hidden] from the previous stage; None on stage 0
    downstream: list[list[Any]]  # the remaining stages, in order: the ActorRefs of each one's TP ranks


@message
class GetStageInfo(msgspec.Struct, frozen=True):
    pass


@message
class StageInfo(msgspec.Struct, frozen=True, kw_only=True):
    layer_range: tuple[int, int]
    head_range: tuple[int, int]  # the KV heads this rank holds
    tp_rank: int
    address: tuple[str, int]
    pid: int


@message
class LinkStage(msgspec.Struct, frozen=True):
    """Dial the next stage's nodes so hidden states go stage to stage."""

    addresses: list[tuple[str, int]]


@message
class ReadKV(msgspec.Struct, frozen=True):
    """This actor's KV (its layers, its heads) of a sequence's first ``num_tokens`` tokens on ``page_ids``."""

    page_ids: list[int]
    num_tokens: int


@message
class WriteKV(msgspec.Struct, frozen=True):
    """Write ``kv [layers, 2, T, heads, D]`` (this actor's share) into the first T token slots of ``page_ids``."""

    page_ids: list[int]
    kv: Any


@dataclass(frozen=True, slots=True)
class _Pages:
    """What `ModelRunner.read_kv` / `write_kv` read of a sequence: its page ids (the leader owns the rest)."""

    page_ids: list[int]


class StageActor(Actor):
    """Layers ``layer_range`` of ``model`` (TP rank ``tp_rank`` of ``tp_size`` when sharded) and their KV pages
    on one device: spawn it on that device's node. ``tp_init`` is the TP group's rendezvous URL (all ranks of
    the stage share it); ``nice`` lowers this process's CPU priority (see `cpu_policy`)."""

    def __init__(
        self,
        *,
        model: str,
        layer_range: list[int],
        dtype: str,
        num_pages: int,
        page_size: int,
        threads: int = 1,
        device: str = "cpu",
        tp_rank: int = 0,
        tp_size: int = 1,
        tp_init: str = "",
        nice: int = 0,
        step_timeout_s: float = 120.0,
    ) -> None:
        self.model_name = model
        self.layer_range = (int(layer_range[0]), int(layer_range[1]))
        self.dtype, self.num_pages, self.page_size, self.threads = dtype, num_pages, page_size, threads
        self.device, self.tp_rank, self.tp_size, self.tp_init = device, tp_rank, tp_size, tp_init
        self.nice = nice
        self.step_timeout_s = step_timeout_s
        self.runner: Any = None
        self.head_range = (0, 0)
        self.address: tuple[str, int] | None = None

    async def on_start(self) -> None:
        self.runner = await asyncio.to_thread(self._build)
        self.address = await self.system.network.ensure_listening()  # NOTE: shared with a leader here

    async def on_stop(self) -> None:
        if self.tp_size > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()

    def _build(self) -> Any:
        import torch

        from thunder.engine.config import resolve_dtype
        from thunder.models import ModelConfig, load_model_dir
        from thunder.runtime.cpu_policy import lower_priority
        from thunder.runtime.tensor_parallel import init_group, kv_head_range, tp_runner

        torch.set_num_threads(self.threads)
        if self.nice:
            lower_priority(self.nice)
        model_dir = load_model_dir(self.model_name)
        cfg = ModelConfig.from_dir(model_dir)
        self.head_range = kv_head_range(cfg, self.tp_rank, self.tp_size)
        if self.tp_size > 1:  # NOTE: by device, not by torch.cuda.is_available(): CPU workers on a GPU host
            backend = "nccl" if self.device.startswith("cuda") else "gloo"
            init_group(self.tp_rank, self.tp_size, self.tp_init, backend=backend)
        return tp_runner(
            model_dir,
            layer_range=self.layer_range,
            dtype=resolve_dtype(self.dtype, self.device),  # type: ignore[arg-type]
            device=self.device,
            num_pages=self.num_pages,
            page_size=self.page_size,
            rank=self.tp_rank,
            world=self.tp_size,
        )

    @handler
    def info(self, msg: GetStageInfo) -> StageInfo:
        assert self.address is not None
        return StageInfo(
            layer_range=self.layer_range,
            head_range=self.head_range,
            tp_rank=self.tp_rank,
            address=self.address,
            pid=os.getpid(),
        )

    @handler
    async def link(self, msg: LinkStage) -> None:
        for address in msg.addresses:
            await self.system.network.connect(*address)

    @handler
    async def forward(self, msg: StageForward) -> Any:
        hidden = await asyncio.to_thread(self.runner.forward, msg.inputs, msg.hidden)
        if self.tp_rank != 0:
            return None  # NOTE: rank 0 carries the (identical, all-reduced) hidden state on
        if msg.downstream:
            nxt = StageForward(msg.inputs, hidden.cpu(), msg.downstream[1:])
            replies = await asyncio.gather(
                *(rank.ask(nxt, timeout=self.step_timeout_s) for rank in msg.downstream[0])
            )
            return replies[0]
        if not msg.inputs.sample_rows:
            return None
        logits = await asyncio.to_thread(self.runner.logits, msg.inputs, hidden)
        return logits.cpu()

    @handler
    async def read_kv(self, msg: ReadKV) -> Any:
        kv = await asyncio.to_thread(self.runner.read_kv, _Pages(msg.page_ids), msg.num_tokens)
        return kv.cpu()

    @handler
    async def write_kv(self, msg: WriteKV) -> None:
        await asyncio.to_thread(self.runner.write_kv, _Pages(msg.page_ids), msg.kv)
