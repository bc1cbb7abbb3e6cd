"""The contract between the HTTP server and whatever generates tokens behind it.

The server tokenizes and validates; the backend (the disaggregated router + device actors, or an
in-process engine) schedules, generates, detokenizes and reports. Everything crossing this line is a
frozen dataclass or a plain dict so a backend can live in another process behind an actor ref.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypedDict, runtime_checkable

if TYPE_CHECKING:
    from thunder.engine import SamplingParams


class Overloaded(Exception):
    """Raised by `Backend.generate` (at the first `__anext__` at the latest) when queues are full.

    The server answers 503 with `Retry-After: ceil(retry_after_s)`.
    """

    def __init__(self, retry_after_s: float, reason: str = "") -> None:
        super().__init__(f"overloaded ({reason or 'queues full'}); retry after {retry_after_s:.2f} s")
        self.retry_after_s = retry_after_s
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class GenerateRequest:
    """One admitted request: prompt already tokenized, parameters already validated against the context."""

    request_id: str
    prompt_token_ids: list[int]
    params: SamplingParams
    arrival_time: float  # time.monotonic() when the HTTP request arrived


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenDelta:
    """New output since the previous delta of the same request.

    `text` is the incremental detokenization of `token_ids` (may be "" while a multi-byte character is
    incomplete). `num_output_tokens` counts all output tokens so far; the last delta has `finished=True`
    and `finish_reason` in {"stop", "length", "abort"}.
    """

    token_ids: list[int]
    text: str
    finished: bool
    finish_reason: str | None
    num_prompt_tokens: int
    num_output_tokens: int


class ReplicaState(TypedDict):
    """One replica's row in `Backend.state()["replicas"]` (feeds the per-replica Prometheus gauges)."""

    replica: str  # e.g. "P0", "D2"
    role: str  # "prefill" | "decode" | "colocated"
    num_running: int
    num_waiting: int
    kv_cache_usage: float  # fraction of KV pages in use, 0.0 .. 1.0


class BackendState(TypedDict, total=False):
    replicas: list[ReplicaState]
    usd_per_hour: float  # price of the devices serving right now (goodput per $/h)


class Tokenizer(Protocol):
    """What the server needs from a tokenizer. An optional `vocab_size: int` attribute, when present, makes
    the server reject out-of-range prompt token ids with a 400 before they reach a device."""

    def encode(self, text: str) -> list[int]: ...

    def decode(self, token_ids: Sequence[int]) -> str: ...

    def apply_chat_template(self, messages: list[dict[str, str]]) -> str | list[int]:
        """Render a chat (with the generation prompt appended) as text or token ids."""
        ...


@runtime_checkable
class Backend(Protocol):
    model_name: str
    max_model_len: int
    tokenizer: Tokenizer

    def generate(self, req: GenerateRequest) -> AsyncIterator[TokenDelta]:
        """Stream deltas until one has `finished=True`. Raises `Overloaded` when it cannot admit `req`."""
        ...

    async def abort(self, request_id: str) -> None:
        """Stop `request_id` and free its pages; a no-op for unknown or finished ids."""
        ...

    async def ready(self) -> bool:
        """True only after a real one-token generation went through every replica."""
        ...

    def plan_json(self) -> dict[str, Any] | None: ...

    def state(self) -> BackendState: ...


__all__ = [
    "Backend",
    "BackendState",
    "GenerateRequest",
    "Overloaded",
    "ReplicaState",
    "TokenDelta",
    "Tokenizer",
]
