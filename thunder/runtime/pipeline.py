"""Pipeline parallelism for the torch engine: one replica group over several device processes.

A `PipelineEngine` is the group leader's engine: it schedules (continuous batching, chunked prefill, the
shared block manager — it is a `BatchingEngine`) and samples, while each `StageActor` (one per device, in its
own OS process) holds a contiguous slice of the layers (the plan's non-uniform split) and its own paged KV
cache for them. Page ids are decided once by the leader, so every stage's cache uses the same page table.

One step: the leader sends `StageForward` (the step's `StepInputs`) to stage 0; stage k runs its layers and
asks stage k+1 directly with the hidden states ``[T, hidden]`` as a raw tensor frame; the last stage returns
the sampling rows' float32 logits, which travel back up the chain to the leader.

NOTE: `PipelineEngine.step` blocks on the actor round trip, so call it off the event loop that runs the
actors (a device actor already steps in a worker thread; tests use ``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence as Seq
from typing import Any

import msgspec

from actors import Actor, ActorRef, ActorSystem, handler, message
from thunder.engine.batching import BatchingEngine
from thunder.engine.config import ConfigError
from thunder.engine.model_runner import StepInputs, prepare_step
from thunder.engine.scheduler import ScheduledBatch
from thunder.engine.sequence import Sequence

__all__ = ["PipelineEngine", "StageActor", "StageForward", "StageInfo", "start_pipeline"]

STAGE_ACTOR = "thunder.runtime.pipeline:StageActor"


@message
class StageForward(msgspec.Struct, frozen=True):
    """Run one step through this stage and the ``downstream`` ones; replies with the sampling rows' logits."""

    inputs: StepInputs
    hidden: Any  # torch.Tensor [T, hidden] from the previous stage; None on stage 0
    downstream: list[Any]  # ActorRefs of the remaining stages, in order


@message
class GetStageInfo(msgspec.Struct, frozen=True):
    pass


@message
class StageInfo(msgspec.Struct, frozen=True, kw_only=True):
    layer_range: tuple[int, int]
    address: tuple[str, int]
    pid: int


@message
class LinkStage(msgspec.Struct, frozen=True):
    """Dial the next stage's node so hidden states go stage to stage."""

    address: tuple[str, int]


class StageActor(Actor):
    """Layers ``layer_range`` of ``model`` and their KV pages on one device (spawn it on that device's node)."""

    def __init__(
        self,
        *,
        model: str,
        layer_range: list[int],
        dtype: str,
        num_pages: int,
        page_size: int,
        threads: int = 1,
        step_timeout_s: float = 120.0,
    ) -> None:
        self.model_name = model
        self.layer_range = (int(layer_range[0]), int(layer_range[1]))
        self.dtype, self.num_pages, self.page_size, self.threads = dtype, num_pages, page_size, threads
        self.step_timeout_s = step_timeout_s
        self.runner: Any = None
        self.address: tuple[str, int] | None = None

    async def on_start(self) -> None:
        self.runner = await asyncio.to_thread(self._build)
        self.address = await self.system.network.ensure_listening()  # NOTE: shared with a leader here

    def _build(self) -> Any:
        import torch

        from thunder.engine.config import resolve_dtype
        from thunder.engine.model_runner import ModelRunner
        from thunder.models import build_model, load_model_dir

        torch.set_num_threads(self.threads)
        model = build_model(
            load_model_dir(self.model_name),
            dtype=resolve_dtype(self.dtype, "cpu"),  # type: ignore[arg-type]
            layer_range=self.layer_range,
        )
        return ModelRunner(model, num_pages=self.num_pages, page_size=self.page_size, device="cpu")

    @handler
    def info(self, msg: GetStageInfo) -> StageInfo:
        import os

        assert self.address is not None
        return StageInfo(layer_range=self.layer_range, address=self.address, pid=os.getpid())

    @handler
    async def link(self, msg: LinkStage) -> None:
        await self.system.network.connect(*msg.address)

    @handler
    async def forward(self, msg: StageForward) -> Any:
        hidden = await asyncio.to_thread(self.runner.forward, msg.inputs, msg.hidden)
        if msg.downstream:
            nxt = StageForward(msg.inputs, hidden, msg.downstream[1:])
            return await msg.downstream[0].ask(nxt, timeout=self.step_timeout_s)
        if not msg.inputs.sample_rows:
            return None
        return await asyncio.to_thread(self.runner.logits, msg.inputs, hidden)


class PipelineEngine(BatchingEngine):
    """The leader of a pipelined replica group: same interface as `LLMEngine`, layers in `StageActor`s."""

    def __init__(
        self,
        *,
        model_dir: Any,
        stages: Seq[ActorRef],
        loop: asyncio.AbstractEventLoop,
        num_pages: int,
        page_size: int,
        max_num_seqs: int,
        max_num_batched_tokens: int,
        seed: int = 0,
        step_timeout_s: float = 120.0,
        dtype: Any = None,
    ) -> None:
        from thunder.engine.sampler import Sampler
        from thunder.models import ModelConfig, Tokenizer

        self.model_config = cfg = ModelConfig.from_dir(model_dir)
        self.dtype = dtype  # the stages' torch dtype (weights and KV)
        self.stages = list(stages)
        self.loop = loop
        self.step_timeout_s = step_timeout_s
        self.sampler = Sampler(seed)
        tokenizer = Tokenizer(model_dir)
        eos = set(cfg.eos_token_ids) | ({tokenizer.eos_token_id} - {None})
        self._init_batching(
            tokenizer=tokenizer,
            vocab_size=cfg.vocab_size,
            eos_token_ids=frozenset(eos),  # type: ignore[arg-type]
            max_model_len=min(cfg.max_position_embeddings, num_pages * page_size),
            num_pages=num_pages,
            page_size=page_size,
            max_num_seqs=max_num_seqs,
            max_num_batched_tokens=max_num_batched_tokens,
            enable_prefix_caching=True,
        )

    def _check_import(self, kv: Any, num_prompt_tokens: int) -> None:
        raise ValueError(
            "KV import into a pipelined replica is not supported yet; hand off to a single-device one"
        )

    def export_kv(self, request_id: str) -> Any:
        raise KeyError(f"request {request_id!r}: KV export from a pipelined replica is not supported yet")

    def _execute(self, batch: ScheduledBatch) -> list[tuple[Sequence, int]]:
        samplers, inputs = prepare_step(batch, self.block_manager.page_size)
        ask = self.stages[0].ask(StageForward(inputs, None, self.stages[1:]), timeout=self.step_timeout_s)
        logits = asyncio.run_coroutine_threadsafe(ask, self.loop).result()
        if not samplers:
            return []
        tokens = self.sampler(logits, [s.params for s in samplers], [s.generator for s in samplers])
        return list(zip(samplers, tokens, strict=True))


async def start_pipeline(
    system: ActorSystem,
    *,
    layer_split: Seq[int],
    model: str | None = None,
    dtype: str = "auto",
    kv_cache_gib: float = 0.25,
    page_size: int = 16,
    max_num_seqs: int = 64,
    max_num_batched_tokens: int = 2048,
    threads_per_stage: int = 1,
    seed: int = 0,
    first_stage_here: bool = False,
    stage_env: Seq[dict[str, str]] | None = None,
) -> tuple[PipelineEngine, list[StageInfo]]:
    """Start the stages (``layer_split[k]`` layers on stage k), link them in order, and return the leader's
    engine plus each stage's `StageInfo`. Stop everything with ``system.shutdown()``.

    Each stage gets its own child process (environment ``stage_env[k]``, default: ``OMP_NUM_THREADS``), all
    started at once so the weights load in parallel; with ``first_stage_here`` stage 0 runs in this process
    instead (a device actor leading the group holds the first layers itself).
    """
    import torch

    from thunder.engine.config import resolve_dtype
    from thunder.models import DEFAULT_MODEL, ModelConfig, load_model_dir

    model = model or DEFAULT_MODEL
    model_dir = load_model_dir(model)
    cfg = ModelConfig.from_dir(model_dir)
    if sum(layer_split) != cfg.num_hidden_layers or min(layer_split) < 1:
        raise ConfigError(
            f"layer_split={list(layer_split)}: need positive parts summing to "
            f"{cfg.num_hidden_layers} (the model's layers)"
        )
    if stage_env is not None and len(stage_env) != len(layer_split):
        raise ConfigError(
            f"stage_env has {len(stage_env)} entries for {len(layer_split)} stages; give one each"
        )
    torch_dtype = resolve_dtype(dtype, "cpu")  # type: ignore[arg-type]
    itemsize = torch.empty(0, dtype=torch_dtype).element_size()
    num_pages = int(kv_cache_gib * (1 << 30)) // (
        cfg.num_hidden_layers * 2 * page_size * cfg.kv_size * itemsize
    )
    if num_pages < 1:
        raise ConfigError(f"kv_cache_gib={kv_cache_gib} holds no KV page; raise it")
    bounds = [0]
    for n in layer_split:
        bounds.append(bounds[-1] + n)

    async def start_stage(k: int) -> ActorRef:
        kwargs = {
            "model": str(model_dir),
            "layer_range": [bounds[k], bounds[k + 1]],
            "dtype": dtype,
            "num_pages": num_pages,
            "page_size": page_size,
            "threads": threads_per_stage,
        }
        if k == 0 and first_stage_here:
            return await system.spawn(StageActor, kwargs=kwargs)
        env = stage_env[k] if stage_env is not None else {"OMP_NUM_THREADS": str(threads_per_stage)}
        node = await system.network.start_node(label=f"stage{k}", env=env)
        return await system.spawn(STAGE_ACTOR, node=node, kwargs=kwargs)

    stages: list[ActorRef] = list(await asyncio.gather(*(start_stage(k) for k in range(len(layer_split)))))
    infos: list[StageInfo] = [await s.ask(GetStageInfo(), timeout=30.0) for s in stages]
    for k in range(1 if first_stage_here else 0, len(stages) - 1):  # stage 0 here already links them all
        await stages[k].ask(LinkStage(infos[k + 1].address), timeout=30.0)
    engine = PipelineEngine(
        model_dir=model_dir,
        stages=stages,
        loop=asyncio.get_running_loop(),
        num_pages=num_pages,
        page_size=page_size,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        seed=seed,
        dtype=torch_dtype,
    )
    return engine, infos
