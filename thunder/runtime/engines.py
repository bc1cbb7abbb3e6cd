"""The `Engine` protocol a device actor drives, and `build_engine` (the pluggable engine registry).

`torch` is `thunder.engine.LLMEngine` (real weights). `sim` (no weights, step times from the planner's cost
model) plugs in through `ENGINE_BUILDERS` once `thunder.engine.sim_engine` exists; until then asking for it fails
with a clear `ConfigError`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from thunder.engine.config import ConfigError

if TYPE_CHECKING:
    import torch

    from thunder.engine import EngineStats, RequestOutput, SamplingParams
    from thunder.runtime.messages import EngineSpec

__all__ = ["ENGINE_BUILDERS", "Engine", "build_engine", "check_engine"]


class Engine(Protocol):
    """What `LLMEngine` offers and a device actor needs. One engine per device; not thread-safe."""

    max_model_len: int

    def add_request(
        self,
        request_id: str,
        prompt_token_ids: list[int],
        params: SamplingParams,
        *,
        prefill_only: bool = False,
        kv: torch.Tensor | None = None,
        first_token: int | None = None,
    ) -> None: ...

    def abort(self, request_id: str) -> None: ...

    def release(self, request_id: str) -> None: ...

    def export_kv(self, request_id: str) -> Any:
        """A held (``prefill_only``) request's prompt KV: a ``[num_layers, 2, num_prompt_tokens, Hkv, D]``
        tensor for real engines (a simulated engine returns what its own handoff understands)."""
        ...

    def has_unfinished(self) -> bool: ...

    def step(self) -> list[RequestOutput]: ...

    def stats(self) -> EngineStats: ...


def _build_torch(spec: EngineSpec) -> Engine:
    from thunder.engine import EngineConfig, LLMEngine

    config = EngineConfig(
        model=spec.model,
        dtype=spec.dtype,  # type: ignore[arg-type]  # EngineConfig validates the string
        device=spec.device,  # type: ignore[arg-type]
        num_threads=spec.threads,
        kv_cache_gib=spec.kv_cache_gib,
        max_num_seqs=spec.max_num_seqs,
        max_num_batched_tokens=spec.max_num_batched_tokens,
        seed=spec.seed,
    )
    return LLMEngine(config)


def _sim_engine_class() -> Any:
    try:
        from thunder.engine.sim_engine import SimEngine  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        raise ConfigError(
            "engine='sim' is not available yet in this build (thunder.engine.sim_engine is missing); "
            "use --engine torch"
        ) from None
    return SimEngine


def _build_sim(spec: EngineSpec) -> Engine:
    engine: Engine = _sim_engine_class().from_spec(spec)
    return engine


def check_engine(kind: str) -> None:
    """Fail fast, before any device process starts, when engine `kind` cannot be built in this install."""
    if kind not in ENGINE_BUILDERS:
        raise ConfigError(f"engine={kind!r}: choose one of {sorted(ENGINE_BUILDERS)}")
    if kind == "sim":
        _sim_engine_class()


ENGINE_BUILDERS: dict[str, Callable[[Any], Engine]] = {"torch": _build_torch, "sim": _build_sim}


def build_engine(spec: EngineSpec) -> Engine:
    """Build the engine `spec.kind` names; raises `ConfigError` listing the kinds for an unknown one."""
    builder = ENGINE_BUILDERS.get(spec.kind)
    if builder is None:
        raise ConfigError(f"engine={spec.kind!r}: choose one of {sorted(ENGINE_BUILDERS)}")
    return builder(spec)
