"""Per-request state (`Sequence`) and the engine's output messages (`RequestOutput`, `Completion`)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Literal

import torch

from thunder.engine.config import SamplingParams
from thunder.engine.detokenizer import IncrementalDetokenizer

__all__ = ["Completion", "FinishReason", "RequestOutput", "Sequence", "SequenceStatus"]

# "prefill_done": a ``prefill_only`` request emitted its first token; its KV is held until `release`.
FinishReason = Literal["stop", "length", "abort", "prefill_done"]


class SequenceStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    HELD = "held"  # prefill_only request done; pages kept for export_kv
    FINISHED = "finished"


class Sequence:
    """Tokens, progress and pages of one request. ``token_ids`` = prompt + generated tokens."""

    __slots__ = (
        "detok",
        "finish_reason",
        "generator",
        "num_computed_tokens",
        "num_cached_tokens",
        "num_prompt_tokens",
        "page_hashes",
        "page_ids",
        "params",
        "pending_kv",
        "prefill_only",
        "request_id",
        "status",
        "stop_ids",
        "token_ids",
    )

    def __init__(
        self,
        *,
        request_id: str,
        prompt_token_ids: list[int],
        params: SamplingParams,
        detok: IncrementalDetokenizer,
        stop_ids: frozenset[int],
        prefill_only: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        self.request_id = request_id
        self.token_ids = list(prompt_token_ids)
        self.num_prompt_tokens = len(prompt_token_ids)
        self.params = params
        self.detok = detok
        self.stop_ids = stop_ids
        self.prefill_only = prefill_only
        self.generator = generator
        self.status = SequenceStatus.WAITING
        self.num_computed_tokens = 0
        self.num_cached_tokens = 0  # prompt tokens served from the prefix cache (last admission)
        self.page_ids: list[int] = []
        self.page_hashes: list[int] = []  # hash-chain keys of this sequence's committed full pages
        self.pending_kv: Any = (
            None  # imported prompt KV (tensor, or the sim engine's SimKV), used on admission
        )
        self.finish_reason: FinishReason | None = None

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def output_token_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens :]

    def reset_for_recompute(self) -> None:
        """Preempted: drop all KV progress; prompt + generated tokens are recomputed on re-admission."""
        self.num_computed_tokens = 0
        self.pending_kv = None
        self.status = SequenceStatus.WAITING


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestOutput:
    """What one step produced for one request: new token ids, their newly printable text, and whether the
    request finished (``finish_reason`` then says why)."""

    request_id: str
    new_token_ids: tuple[int, ...]
    new_text: str
    finished: bool
    finish_reason: FinishReason | None
    num_prompt_tokens: int
    num_cached_tokens: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Completion:
    """A finished request, as returned by `LLMEngine.generate`."""

    request_id: str
    prompt_token_ids: tuple[int, ...]
    token_ids: tuple[int, ...]
    text: str
    finish_reason: FinishReason | None
