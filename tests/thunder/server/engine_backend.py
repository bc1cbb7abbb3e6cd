"""A small in-process `Backend` around one real `thunder.engine.LLMEngine` (colocated, no actors).

Every engine call (add, abort, step) runs on one worker thread, in submission order, so the engine is
never touched concurrently and the event loop never blocks on a forward pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from thunder.engine import LLMEngine, RequestOutput, SamplingParams
from thunder.server import BackendState, GenerateRequest, TokenDelta

R = TypeVar("R")


class EngineBackend:
    def __init__(self, engine: LLMEngine, model_name: str) -> None:
        self.engine = engine
        self.model_name = model_name
        self.tokenizer = engine.tokenizer
        self.max_model_len = engine.max_model_len
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")
        self._queues: dict[str, asyncio.Queue[RequestOutput]] = {}
        self._stepper: asyncio.Task[None] | None = None
        self._probed = False

    async def _call(self, fn: Callable[..., R], *args: Any) -> R:
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    async def _step_while_busy(self) -> None:
        while self._queues or self.engine.has_unfinished():
            for out in await self._call(self.engine.step):
                if (queue := self._queues.get(out.request_id)) is not None:
                    queue.put_nowait(out)
            await asyncio.sleep(0)  # let new requests and aborts in between steps

    async def generate(self, req: GenerateRequest) -> AsyncIterator[TokenDelta]:
        queue: asyncio.Queue[RequestOutput] = asyncio.Queue()
        self._queues[req.request_id] = queue
        try:
            await self._call(self.engine.add_request, req.request_id, req.prompt_token_ids, req.params)
            if self._stepper is None or self._stepper.done():
                self._stepper = asyncio.create_task(self._step_while_busy())
            produced = 0
            while True:
                out = await queue.get()
                produced += len(out.new_token_ids)
                yield TokenDelta(
                    token_ids=list(out.new_token_ids),
                    text=out.new_text,
                    finished=out.finished,
                    finish_reason=out.finish_reason,
                    num_prompt_tokens=out.num_prompt_tokens,
                    num_output_tokens=produced,
                )
                if out.finished:
                    return
        finally:
            self._queues.pop(req.request_id, None)

    async def abort(self, request_id: str) -> None:
        await self._call(self.engine.abort, request_id)

    async def ready(self) -> bool:
        if not self._probed:  # a real one-token generation, once
            probe = GenerateRequest(
                request_id="health-probe", prompt_token_ids=self.tokenizer.encode("ping"),
                params=SamplingParams(max_tokens=1, temperature=0), arrival_time=0.0,
            )  # fmt: skip
            deltas = [d async for d in self.generate(probe)]
            self._probed = deltas[-1].finished and deltas[-1].num_output_tokens == 1
        return self._probed

    def plan_json(self) -> dict[str, Any] | None:
        return None

    def state(self) -> BackendState:
        stats = self.engine.stats()
        usage = stats.kv_pages_used / stats.kv_pages_total
        row = {"replica": "C0", "role": "colocated", "num_running": stats.running, "num_waiting": stats.waiting,
               "kv_cache_usage": usage}  # fmt: skip
        return {"replicas": [row]}  # type: ignore[list-item]

    async def close(self) -> None:
        if self._stepper is not None:
            await self._stepper
        self._worker.shutdown(wait=True)
