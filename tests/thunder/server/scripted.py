"""A deterministic scripted `Backend` — a TEST DOUBLE FOR THE HTTP LAYER ONLY.

It stands in for the router + device actors so the server's routing, validation, SSE framing, error
shapes, disconnect handling and metrics can be tested exactly (known texts, forced overload, a gate to
hold a stream open). It generates nothing model-like: the output replays the prompt's bytes. Tests that
claim real generation use `engine_backend.EngineBackend` around a real `thunder.engine.LLMEngine`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from thunder.server import BackendState, GenerateRequest, Overloaded, TokenDelta

EOS = 0


class ByteTokenizer:
    """One token per UTF-8 byte; id 0 is EOS."""

    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, token_ids: Sequence[int]) -> str:
        return bytes(token_ids).decode("utf-8", errors="replace")

    def apply_chat_template(self, messages: list[dict[str, str]]) -> str:
        if any(m["role"] == "tool" for m in messages):  # like real templates that raise on roles they lack
            raise ValueError("this template has no `tool` role")
        return "".join(f"<{m['role']}>{m['content']}\n" for m in messages) + "<assistant>"


def scripted_output(prompt_token_ids: list[int], max_tokens: int) -> list[int]:
    """The tokens the scripted backend emits for a prompt: its bytes, cycled, up to max_tokens."""
    return [prompt_token_ids[i % len(prompt_token_ids)] for i in range(max_tokens)]


class ScriptedBackend:
    model_name = "scripted-echo"
    max_model_len = 128

    def __init__(
        self, *, capacity: int = 1_000, gate: asyncio.Event | None = None, hold_after: int = 0
    ) -> None:
        self.tokenizer = ByteTokenizer()
        self.capacity = capacity
        self.gate = gate  # tokens after the first `hold_after` wait on it (lets a test hold a stream open)
        self.hold_after = hold_after
        self.active: set[str] = set()
        self.aborted: list[str] = []
        self.requests: list[GenerateRequest] = []
        self.is_ready = False
        self.plan: dict[str, Any] | None = None

    async def generate(self, req: GenerateRequest) -> AsyncIterator[TokenDelta]:
        if len(self.active) >= self.capacity:
            raise Overloaded(2.5, f"{len(self.active)} requests running, capacity {self.capacity}")
        self.requests.append(req)
        self.active.add(req.request_id)
        try:
            params = req.params
            out: list[int] = []
            for token in scripted_output(req.prompt_token_ids, params.max_tokens):
                if self.gate is not None and len(out) >= self.hold_after:
                    await self.gate.wait()
                await asyncio.sleep(0)
                out.append(token)
                stop = token in params.stop_token_ids or (token == EOS and not params.ignore_eos)
                finished = stop or len(out) == params.max_tokens
                yield TokenDelta(
                    token_ids=[token],
                    text="" if stop else self.tokenizer.decode([token]),
                    finished=finished,
                    finish_reason=("stop" if stop else "length") if finished else None,
                    num_prompt_tokens=len(req.prompt_token_ids),
                    num_output_tokens=len(out),
                )
                if finished:
                    return
        finally:
            self.active.discard(req.request_id)

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)

    async def ready(self) -> bool:
        return self.is_ready

    def plan_json(self) -> dict[str, Any] | None:
        return self.plan

    def state(self) -> BackendState:
        return {
            "replicas": [
                {"replica": "P0", "role": "prefill", "num_running": 1, "num_waiting": 2, "kv_cache_usage": 0.25},
                {"replica": "D0", "role": "decode", "num_running": len(self.active), "num_waiting": 0,
                 "kv_cache_usage": 0.5},
            ],
            "usd_per_hour": 1.5,
        }  # fmt: skip
