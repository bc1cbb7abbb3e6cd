"""`SimEngine`: the declared simulator engine — the real scheduler and block manager, no weights.

Each `step()` schedules exactly like `LLMEngine` (continuous batching, chunked prefill, prefix cache,
preemption by recompute — both are a `BatchingEngine`), but instead of a forward pass it *prices* the batch
with the planner's `CostModel` for the replica's declared GPU types and parallel config, stores that in
`last_step_seconds`, and emits placeholder tokens. The step never sleeps: the device actor awaits
``asyncio.sleep(engine.last_step_seconds)``, so simulated time also runs on the actors test kit's virtual clock.

Placeholder tokens: output token ``k`` of every request is ``PLACEHOLDER[k % len(PLACEHOLDER)]`` (the text
`PLACEHOLDER_TEXT` under the tokenizer), whichever engine produced it — a disaggregated stream equals a
colocated one. EOS never appears, so requests end on ``max_tokens`` (``ignore_eos`` semantics), on a stop
string or stop token id that the placeholder text contains, or on the context length.

KV is not materialised: `export_kv` returns a `SimKV` carrying the ``[L, 2, T, Hkv, D]`` shape, so the KV
handoff can charge the real wire bytes (after compression) against the declared link.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from planner import CostModel, ModelSpec, ReplicaConfig, SpecError
from thunder.engine.batching import BatchingEngine
from thunder.engine.config import ConfigError
from thunder.engine.scheduler import ScheduledBatch
from thunder.engine.sequence import RequestOutput, Sequence
from thunder.models import DEFAULT_MODEL, Tokenizer, load_model_dir

__all__ = ["PLACEHOLDER_TEXT", "SimEngine", "SimEngineConfig", "SimKV", "batch_seconds", "placeholder_tokenizer"]

PLACEHOLDER_TEXT = " The quick brown fox jumps over the lazy dog."
SIM_DEVICE = "sim/0"


@dataclass(frozen=True, slots=True)
class SimKV:
    """A request's prompt KV as the sim engine knows it: shape ``[L, 2, T, Hkv, D]`` and element size, no data."""

    shape: tuple[int, int, int, int, int]
    dtype_bytes: int = 2

    @property
    def num_tokens(self) -> int:
        return self.shape[2]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype_bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class SimEngineConfig:
    """One simulated replica. ``replica_config`` is a planner `ReplicaConfig.to_dict()` (what the plan gives
    the group); ``None`` means one ``gpu_type`` device holding every layer. ``kv_capacity_tokens`` defaults
    to what the cost model's memory model leaves after weights and activations."""

    model: str = "llama-30b"
    gpu_type: str = "a100-80gb-sxm"
    replica_config: Mapping[str, Any] | None = None
    page_size: int = 16
    max_num_seqs: int = 128
    max_num_batched_tokens: int = 2048
    kv_capacity_tokens: int | None = None
    max_model_len: int | None = None
    enable_prefix_caching: bool = True
    kv_dtype_bytes: int = 2

    def __post_init__(self) -> None:
        if self.page_size < 1 or self.page_size & (self.page_size - 1):
            raise ConfigError(f"page_size={self.page_size}: must be a power of two >= 1; try 16")
        if self.max_num_seqs < 1:
            raise ConfigError(f"max_num_seqs={self.max_num_seqs}: must be >= 1; try 128")
        if self.max_num_batched_tokens < 1:
            raise ConfigError(f"max_num_batched_tokens={self.max_num_batched_tokens}: must be >= 1; try 2048")
        if self.kv_capacity_tokens is not None and self.kv_capacity_tokens < self.page_size:
            raise ConfigError(
                f"kv_capacity_tokens={self.kv_capacity_tokens}: must hold one page ({self.page_size} tokens)"
            )


class _SpecLike(Protocol):
    """The fields of `thunder.runtime.messages.EngineSpec` that `SimEngine.from_spec` reads."""

    @property
    def model(self) -> str: ...
    @property
    def gpu_type(self) -> str: ...
    @property
    def replica_config(self) -> dict[str, Any]: ...
    @property
    def max_num_seqs(self) -> int: ...
    @property
    def max_num_batched_tokens(self) -> int: ...


@functools.cache
def placeholder_tokenizer() -> Tokenizer:
    """The embedded SmolLM2 tokenizer, shared: the sim engine's text <-> ids for any simulated model."""
    return Tokenizer(load_model_dir(DEFAULT_MODEL))


def batch_seconds(
    cost_model: CostModel,
    config: ReplicaConfig,
    *,
    chunks: list[tuple[int, int, bool]],
    decode_contexts: list[int],
) -> float:
    """Roofline seconds of one engine step on replica ``config``.

    Args:
        chunks: prefill chunks as ``(start, num_tokens, samples)``: tokens ``start .. start+num_tokens-1`` of
            a sequence whose first ``start`` tokens are already in KV; ``samples`` if it computes logits.
        decode_contexts: KV length (after this step) of each decoding sequence.

    A pure decode batch is ``cost_model.decode_step_time`` (with PP micro-batching); any batch with prefill
    work is one pass of the combined load through every stage plus the PP hops. For whole prompts and no
    decodes that is exactly ``cost_model.prefill_time``.
    """
    if not chunks:
        if not decode_contexts:
            return 0.0
        return cost_model.decode_step_time(config, len(decode_contexts), float(np.mean(decode_contexts)))
    tokens = attn_pairs = kv_tokens = heads = 0.0
    for start, n, samples in chunks:
        tokens += n
        attn_pairs += n * start + n * (n + 1) / 2  # query i (1-based, absolute) attends to i keys
        kv_tokens += start + n  # reads the cached prefix, writes the chunk
        heads += samples
    tokens += len(decode_contexts)
    attn_pairs += sum(decode_contexts)
    kv_tokens += sum(decode_contexts)
    heads += len(decode_contexts)
    last = config.pp - 1
    stages = sum(
        float(cost_model.stage_cost(st, st.num_layers, first=k == 0, last=k == last, tokens=tokens,
                                    attn_pairs=attn_pairs, kv_tokens=kv_tokens, heads=heads))
        for k, st in enumerate(config.stages)
    )
    return stages + cost_model.hop_time(config, tokens)


class SimEngine(BatchingEngine):
    """A replica simulated from the cost model; same interface as `LLMEngine` (the runtime's `Engine`).

    Attributes beyond `LLMEngine`'s: ``last_step_seconds`` (the simulated duration of the latest `step`; 0
    when it ran nothing), ``busy_seconds`` (their sum), ``model_spec``, ``replica`` and ``cost_model``.
    """

    def __init__(
        self,
        config: SimEngineConfig | None = None,
        *,
        cost_model: CostModel | None = None,
        tokenizer: Tokenizer | None = None,
    ) -> None:
        config = config or SimEngineConfig()
        self.config = config
        try:
            self.model_spec = cost_model.model if cost_model is not None else ModelSpec.from_catalog(config.model)
            self.cost_model = cost_model or CostModel.from_catalog(self.model_spec)
            self.replica = self._replica_config(config)
            capacity = config.kv_capacity_tokens or self.cost_model.max_kv_tokens(self.replica)
        except SpecError as exc:
            raise ConfigError(f"sim engine: {exc}") from None
        if capacity < config.page_size:
            raise ConfigError(
                f"sim engine: {self.model_spec.name} does not fit on {self.replica.gpu_types} "
                f"(room for {capacity} KV tokens after weights); give the replica more or larger devices"
            )
        tokenizer = tokenizer or placeholder_tokenizer()
        eos = frozenset() if tokenizer.eos_token_id is None else frozenset({tokenizer.eos_token_id})
        ids = [t for t in tokenizer.encode(PLACEHOLDER_TEXT, add_special_tokens=False) if t not in eos]
        self.placeholder: tuple[int, ...] = tuple(ids)
        num_pages = capacity // config.page_size
        self._init_batching(
            tokenizer=tokenizer,
            vocab_size=tokenizer.vocab_size,
            max_model_len=min(config.max_model_len or self.model_spec.max_context, num_pages * config.page_size),
            eos_token_ids=eos,
            num_pages=num_pages,
            page_size=config.page_size,
            max_num_seqs=config.max_num_seqs,
            max_num_batched_tokens=config.max_num_batched_tokens,
            enable_prefix_caching=config.enable_prefix_caching,
        )
        self.last_step_seconds = 0.0
        self.busy_seconds = 0.0

    def _replica_config(self, config: SimEngineConfig) -> ReplicaConfig:
        if config.replica_config:
            replica = ReplicaConfig.from_dict(dict(config.replica_config))
            if replica.num_layers != self.model_spec.num_layers:
                raise ConfigError(
                    f"sim engine: replica_config holds {replica.num_layers} layers but {self.model_spec.name} "
                    f"has {self.model_spec.num_layers}; plan the group for this model"
                )
        else:
            replica = ReplicaConfig.single(config.gpu_type, (SIM_DEVICE,), self.model_spec.num_layers)
        for gpu in set(replica.gpu_types):
            self.cost_model.constants(gpu)  # raises SpecError naming an unknown device type
        return replica

    @classmethod
    def from_spec(cls, spec: _SpecLike, *, cost_model: CostModel | None = None) -> SimEngine:
        """Build from the runtime's `EngineSpec` (model, gpu_type, replica_config, batch limits)."""
        return cls(
            SimEngineConfig(
                model=spec.model, gpu_type=spec.gpu_type, replica_config=spec.replica_config or None,
                max_num_seqs=spec.max_num_seqs, max_num_batched_tokens=spec.max_num_batched_tokens,
            ),
            cost_model=cost_model,
        )

    # -- BatchingEngine hooks ---------------------------------------------------------------------------

    def _kv_shape(self, num_tokens: int) -> tuple[int, int, int, int, int]:
        m = self.model_spec
        return (m.num_layers, 2, num_tokens, m.num_kv_heads, m.head_dim)

    def _check_import(self, kv: Any, num_prompt_tokens: int) -> None:
        expected = self._kv_shape(num_prompt_tokens)
        shape = tuple(getattr(kv, "shape", ()))
        if shape != expected:
            raise ValueError(f"kv has shape {shape}; expected {expected} for this prompt")

    def export_kv(self, request_id: str) -> SimKV:
        """The held request's prompt KV as a `SimKV` of shape ``[L, 2, num_prompt_tokens, Hkv, D]``."""
        seq = self._held(request_id)
        return SimKV(self._kv_shape(seq.num_prompt_tokens), self.config.kv_dtype_bytes)

    def _execute(self, batch: ScheduledBatch) -> list[tuple[Sequence, int]]:
        chunks: list[tuple[int, int, bool]] = []
        contexts: list[int] = []
        sampled: list[tuple[Sequence, int]] = []
        for seq, n in zip(batch.seqs, batch.num_new_tokens, strict=True):
            seq.pending_kv = None  # imported KV "lands" in the pages the scheduler allocated
            start = seq.num_computed_tokens
            samples = start + n == seq.num_tokens
            if n == 1 and samples and start >= seq.num_prompt_tokens:
                contexts.append(start + 1)
            else:
                chunks.append((start, n, samples))
            if samples:
                sampled.append((seq, self.placeholder[seq.num_output_tokens % len(self.placeholder)]))
        self.last_step_seconds = batch_seconds(self.cost_model, self.replica, chunks=chunks,
                                               decode_contexts=contexts)
        self.busy_seconds += self.last_step_seconds
        return sampled

    def step(self) -> list[RequestOutput]:
        self.last_step_seconds = 0.0
        return super().step()
