"""Factories shared by the engine unit tests (no model needed)."""

from __future__ import annotations

from thunder.engine import SamplingParams, Sequence


def make_seq(request_id: str, tokens: list[int], *, max_tokens: int = 8) -> Sequence:
    return Sequence(
        request_id=request_id,
        prompt_token_ids=tokens,
        params=SamplingParams(max_tokens=max_tokens, temperature=0),
        detok=None,  # type: ignore[arg-type]  # the scheduler and block manager never detokenize
        stop_ids=frozenset(),
    )
