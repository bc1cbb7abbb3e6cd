"""Pipeline and tensor parallelism for the torch engine: one replica group over several device processes.

A `PipelineEngine` is the group leader's engine: it schedules (continuous batching, chunked prefill, the
shared block manager — it is a `BatchingEngine`) and samples, while the layers live in `StageActor`s
(`pipeline_stage`): stage k holds a contiguous slice of the layers (the plan's non-uniform split) over its TP
degree's ranks, one device process each, each with its own paged KV cache. Page ids are decided once by the
leader, so every stage's cache uses the same page table.

KV handoff (prefill or decode groups): `export_kv` asks every rank for its layers' and heads' share of the
request's KV and assembles the dense ``[L, 2, T, Hkv, D]`` tensor every engine exchanges; an imported KV is cut
the same way and written to each rank before the request's first step. So the two sides of a handoff never
need the same split (PP, TP or a single device).

NOTE: `PipelineEngine.step` blocks on the actor round trip, so call it off the event loop that runs the
actors (a device actor already steps in a worker thread; tests use ``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence as Seq
from typing import Any

from actors import ActorRef, ActorSystem
from thunder.engine.batching import BatchingEngine
from thunder.engine.config import ConfigError
from thunder.engine.model_runner import prepare_step
from thunder.engine.scheduler import ScheduledBatch
from thunder.engine.sequence import Sequence
from thunder.runtime.pipeline_stage import (
    STAGE_ACTOR,
    GetStageInfo,
    LinkStage,
    ReadKV,
    StageActor,
    StageForward,
    StageInfo,
    WriteKV,
)

__all__ = ["PipelineEngine", "StageInfo", "start_pipeline"]


class PipelineEngine(BatchingEngine):
    """The leader of a pipelined / tensor-parallel replica group: same interface as `LLMEngine`, the layers in
    `StageActor`s (``stages[k]`` lists stage k's TP ranks; ``infos`` their `StageInfo`s, same shape)."""

    def __init__(
        self,
        *,
        model_dir: Any,
        stages: Seq[Seq[ActorRef]],
        infos: Seq[Seq[StageInfo]],
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
        self.stages = [list(ranks) for ranks in stages]
        self.infos = [list(ranks) for ranks in infos]
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

    def _ask_all(self, asks: list[tuple[ActorRef, Any]]) -> list[Any]:
        """Ask every ``(ref, msg)`` at once on the actors' loop (from the stepping thread); replies in order."""

        async def gather() -> list[Any]:
            return list(await asyncio.gather(*(r.ask(m, timeout=self.step_timeout_s) for r, m in asks)))

        return asyncio.run_coroutine_threadsafe(gather(), self.loop).result()

    def _ranks(self) -> list[tuple[ActorRef, StageInfo]]:
        return [
            (r, i)
            for rs, infos in zip(self.stages, self.infos, strict=True)
            for r, i in zip(rs, infos, strict=True)
        ]

    def _check_import(self, kv: Any, num_prompt_tokens: int) -> None:
        cfg = self.model_config
        expected = (cfg.num_hidden_layers, 2, num_prompt_tokens, cfg.num_key_value_heads, cfg.head_dim)
        if tuple(kv.shape) != expected:
            raise ValueError(f"kv has shape {tuple(kv.shape)}; expected {expected} for this prompt")

    def export_kv(self, request_id: str) -> Any:
        """The held request's prompt KV ``[num_layers, 2, T, Hkv, D]``, assembled from every rank's share."""
        import torch

        seq = self._held(request_id)
        n = seq.num_prompt_tokens
        pages = seq.page_ids[: -(-n // self.block_manager.page_size)]
        parts = self._ask_all([(ref, ReadKV(list(pages), n)) for ref, _ in self._ranks()])
        per_stage, k = [], 0
        for ranks in self.stages:  # NOTE: ranks of a stage hold consecutive KV heads, in rank order
            per_stage.append(torch.cat(parts[k : k + len(ranks)], dim=3))
            k += len(ranks)
        return torch.cat(per_stage, dim=0)

    def _write_imports(self, batch: ScheduledBatch) -> None:
        asks: list[tuple[ActorRef, Any]] = []
        for seq in batch.seqs:
            kv = seq.pending_kv
            if kv is None:
                continue
            seq.pending_kv = None
            pages = seq.page_ids[: -(-kv.shape[2] // self.block_manager.page_size)]
            for ref, info in self._ranks():
                (a, b), (h0, h1) = info.layer_range, info.head_range
                asks.append((ref, WriteKV(list(pages), kv[a:b, :, :, h0:h1].contiguous().cpu())))
        if asks:
            self._ask_all(asks)

    def _execute(self, batch: ScheduledBatch) -> list[tuple[Sequence, int]]:
        self._write_imports(batch)
        samplers, inputs = prepare_step(batch, self.block_manager.page_size)
        msg = StageForward(inputs, None, self.stages[1:])
        logits = self._ask_all([(ref, msg) for ref in self.stages[0]])[0]
        if not samplers:
            return []
        tokens = self.sampler(logits, [s.params for s in samplers], [s.generator for s in samplers])
        return list(zip(samplers, tokens, strict=True))


def _rendezvous() -> str:
    """A TP group's torch.distributed rendezvous URL on this host."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{sock.getsockname()[1]}"


async def start_pipeline(
    system: ActorSystem,
    *,
    layer_split: Seq[int],
    tp_degrees: Seq[int] | None = None,
    model: str | None = None,
    dtype: str = "auto",
    device: str = "cpu",
    kv_cache_gib: float = 0.25,
    page_size: int = 16,
    max_num_seqs: int = 64,
    max_num_batched_tokens: int = 2048,
    threads_per_stage: int = 1,
    nice: int = 0,
    seed: int = 0,
    first_stage_here: bool = False,
    stage_env: Seq[dict[str, str]] | None = None,
) -> tuple[PipelineEngine, list[list[StageInfo]]]:
    """Start the stages (``layer_split[k]`` layers on stage k, TP over ``tp_degrees[k]`` ranks, default 1),
    link them in order, and return the leader's engine plus each stage's ranks' `StageInfo`. Stop everything
    with ``system.shutdown()``.

    Every rank gets its own child process (environment ``stage_env[i]`` for the i-th rank counting stage by
    stage — the plan's device order; default: ``OMP_NUM_THREADS``), all started at once so the weights load in
    parallel; with ``first_stage_here`` rank 0 of stage 0 runs in this process instead (a device actor leading
    the group holds the first layers itself). ``nice`` lowers every stage process's CPU priority.
    """
    import torch

    from thunder.engine.config import resolve_dtype
    from thunder.models import DEFAULT_MODEL, ModelConfig, load_model_dir

    model = model or DEFAULT_MODEL
    model_dir = load_model_dir(model)
    cfg = ModelConfig.from_dir(model_dir)
    tps = list(tp_degrees) if tp_degrees is not None else [1] * len(layer_split)
    if sum(layer_split) != cfg.num_hidden_layers or min(layer_split) < 1:
        raise ConfigError(
            f"layer_split={list(layer_split)}: need positive parts summing to "
            f"{cfg.num_hidden_layers} (the model's layers)"
        )
    if len(tps) != len(layer_split) or not all(1 <= t <= cfg.num_key_value_heads for t in tps):
        raise ConfigError(
            f"tp_degrees={tps}: need one TP degree per stage, each between 1 and "
            f"{cfg.num_key_value_heads} (the model's KV heads)"
        )
    if stage_env is not None and len(stage_env) != sum(tps):
        raise ConfigError(
            f"stage_env has {len(stage_env)} entries for {sum(tps)} stage ranks; give one per device"
        )
    torch_dtype = resolve_dtype(dtype, device)  # type: ignore[arg-type]
    itemsize = torch.empty(0, dtype=torch_dtype).element_size()
    num_pages = int(kv_cache_gib * (1 << 30)) // (
        cfg.num_hidden_layers * 2 * page_size * cfg.kv_size * itemsize
    )
    if num_pages < 1:
        raise ConfigError(f"kv_cache_gib={kv_cache_gib} holds no KV page; raise it")
    bounds = [0]
    for n in layer_split:
        bounds.append(bounds[-1] + n)
    inits = [_rendezvous() if t > 1 else "" for t in tps]
    slots = [(k, r) for k, t in enumerate(tps) for r in range(t)]

    async def start_rank(i: int, k: int, r: int) -> ActorRef:
        kwargs = {
            "model": str(model_dir),
            "layer_range": [bounds[k], bounds[k + 1]],
            "dtype": dtype,
            "num_pages": num_pages,
            "page_size": page_size,
            "threads": threads_per_stage,
            "device": device,
            "tp_rank": r,
            "tp_size": tps[k],
            "tp_init": inits[k],
            "nice": nice,
        }
        if i == 0 and first_stage_here:
            return await system.spawn(StageActor, kwargs=kwargs)
        env = stage_env[i] if stage_env is not None else {"OMP_NUM_THREADS": str(threads_per_stage)}
        node = await system.network.start_node(label=f"stage{k}-tp{r}", env=env)
        return await system.spawn(STAGE_ACTOR, node=node, kwargs=kwargs)

    refs = list(await asyncio.gather(*(start_rank(i, k, r) for i, (k, r) in enumerate(slots))))
    flat: list[StageInfo] = [await s.ask(GetStageInfo(), timeout=30.0) for s in refs]
    stages: list[list[ActorRef]] = [[] for _ in tps]
    infos: list[list[StageInfo]] = [[] for _ in tps]
    for (k, _), ref, info in zip(slots, refs, flat, strict=True):
        stages[k].append(ref)
        infos[k].append(info)
    for k in range(len(stages) - 1):  # rank 0 of stage k sends to every rank of stage k+1
        if not (k == 0 and first_stage_here):  # NOTE: this process links on demand already
            await stages[k][0].ask(LinkStage([i.address for i in infos[k + 1]]), timeout=30.0)
    engine = PipelineEngine(
        model_dir=model_dir,
        stages=stages,
        infos=infos,
        loop=asyncio.get_running_loop(),
        num_pages=num_pages,
        page_size=page_size,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        seed=seed,
        dtype=torch_dtype,
    )
    return engine, infos
