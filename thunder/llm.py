"""`AsyncLLM`: the serving runtime as a library, for any asyncio program.

llm = await AsyncLLM.start()                      # SmolLM2 on this CPU: 1 prefill + 1 decode process
result = await llm.generate("Hello", max_tokens=16, temperature=0)
async for delta in llm.stream([{"role": "user", "content": "Hi"}], max_tokens=32):
    print(delta.text, end="")
await llm.shutdown()
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from thunder.runtime.backend import ActorBackend
from thunder.runtime.config import RuntimeConfig
from thunder.runtime.launch import start_runtime
from thunder.runtime.messages import Sampling
from thunder.runtime.runtime import Runtime
from thunder.runtime.streams import StreamFailed

if TYPE_CHECKING:
    from planner import Plan
    from thunder.metrics import ServingMetrics
    from thunder.server.backend import TokenDelta

__all__ = ["AsyncLLM", "GenerationResult", "Prompt"]

Prompt = str | list[int] | list[dict[str, str]]
"""Text, token ids, or chat messages ``[{"role": ..., "content": ...}]`` (rendered with the chat template)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GenerationResult:
    text: str
    token_ids: list[int]
    finish_reason: str | None
    num_prompt_tokens: int


class AsyncLLM:
    """A running deployment. Build it with `await AsyncLLM.start(...)`; also an async context manager."""

    _ids = itertools.count()

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.backend = ActorBackend(runtime)
        self._prefix = f"llm-{os.getpid()}"

    @classmethod
    async def start(
        cls,
        model: str | None = None,
        *,
        devices: int | None = None,
        cluster: str | None = None,
        plan: str | None = None,
        engine: str = "torch",
        kv_transfer_dtype: str = "int4",
        mode: str = "disaggregated",
        metrics: ServingMetrics | None = None,
        on_progress: Callable[[str], None] | None = None,
        **options: Any,
    ) -> AsyncLLM:
        """Discover (or read) the cluster, plan, start the device processes and probe every replica.

        `options` are further `RuntimeConfig` fields (dtype, threads_per_device, kv_cache_gib, ...).
        """
        fields: dict[str, Any] = {
            "devices": devices,
            "cluster": cluster,
            "plan": plan,
            "engine": engine,
            "kv_transfer_dtype": kv_transfer_dtype,
            "mode": mode,
            **options,
        }
        if model is not None:
            fields["model"] = model
        runtime = await start_runtime(RuntimeConfig(**fields), metrics=metrics, on_progress=on_progress)
        return cls(runtime)

    async def __aenter__(self) -> AsyncLLM:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    @property
    def plan(self) -> Plan:
        """The plan being served (groups, phases, routing ratios, predictions)."""
        return self.runtime.plan

    def encode(self, prompt: Prompt) -> list[int]:
        """Token ids of `prompt` exactly as the HTTP server builds them."""
        tok = self.runtime.tokenizer
        if isinstance(prompt, str):
            return tok.encode(prompt)
        if all(isinstance(t, int) for t in prompt):
            return list(prompt)  # type: ignore[arg-type]
        rendered = tok.apply_chat_template(prompt)  # type: ignore[arg-type]
        return tok.encode(rendered) if isinstance(rendered, str) else list(rendered)

    async def stream(self, prompt: Prompt, **sampling: Any) -> AsyncIterator[TokenDelta]:
        """Yield `TokenDelta`s as they are generated. Leaving the loop early aborts the request (pages freed).

        `sampling`: `SamplingParams` fields (max_tokens, temperature, top_p, top_k, seed, stop, ...).
        """
        ids = self.encode(prompt)
        if not ids:
            raise ValueError("prompt is empty after tokenization; give at least one token")
        params = Sampling.of(_params(sampling))
        request_id = f"{self._prefix}-{next(self._ids)}"
        queue = self.runtime.submit(request_id, ids, params)
        finished = False
        try:
            while not finished:
                item = await queue.get()
                if isinstance(item, StreamFailed):
                    raise item
                finished = item.finished
                yield item
        finally:
            if not finished:
                await self.runtime.abort(request_id)

    async def generate(self, prompt: Prompt, **sampling: Any) -> GenerationResult:
        """Run one request to the end (see `stream` for the arguments)."""
        text: list[str] = []
        tokens: list[int] = []
        last: TokenDelta | None = None
        async for delta in self.stream(prompt, **sampling):
            text.append(delta.text)
            tokens.extend(delta.token_ids)
            last = delta
        assert last is not None
        return GenerationResult(
            text="".join(text),
            token_ids=tokens,
            finish_reason=last.finish_reason,
            num_prompt_tokens=last.num_prompt_tokens,
        )

    async def shutdown(self) -> None:
        """Stop the device processes and actors (idempotent)."""
        await self.runtime.shutdown()


def _params(sampling: dict[str, Any]) -> Any:
    from thunder.engine import SamplingParams

    return SamplingParams(**sampling)
