"""`ActorBackend`: the HTTP server's `Backend` protocol on top of a running `Runtime` (router + devices)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import actors
from thunder.runtime.messages import Sampling
from thunder.runtime.runtime import Runtime
from thunder.runtime.streams import StreamFailed
from thunder.server.backend import (
    BackendState,
    GenerateRequest,
    Overloaded,
    ReplicaState,
    TokenDelta,
    Tokenizer,
)

__all__ = ["ActorBackend"]

RETRY_AFTER_S = 1.0


class ActorBackend:
    """Serves `thunder.server.create_app` from a `Runtime`. Bounded: past `max_pending` (default
    `runtime.config.max_pending`) unfinished requests, or with the router's mailbox full, `generate` raises
    `Overloaded` (HTTP 503 + Retry-After)."""

    def __init__(self, runtime: Runtime, *, max_pending: int | None = None) -> None:
        self.runtime = runtime
        self.max_pending = max_pending or runtime.config.max_pending
        self.model_name = runtime.model_name
        self.max_model_len = runtime.max_model_len
        # NOTE: thunder.models.Tokenizer implements the server's Tokenizer protocol (decode takes a list).
        self.tokenizer: Tokenizer = cast("Tokenizer", runtime.tokenizer)

    async def generate(self, req: GenerateRequest) -> AsyncIterator[TokenDelta]:
        rt = self.runtime
        if rt.closed:
            raise Overloaded(RETRY_AFTER_S, "the server is shutting down")
        pending, limit = len(rt.streams), self.max_pending
        if pending >= limit:
            raise Overloaded(RETRY_AFTER_S, f"{pending} requests in flight, limit {limit} (--max-pending)")
        try:
            queue = rt.submit(req.request_id, req.prompt_token_ids, Sampling.of(req.params))
        except actors.Overloaded as exc:
            raise Overloaded(RETRY_AFTER_S, f"router queue full: {exc}") from None
        while True:
            item = await queue.get()
            if isinstance(item, StreamFailed):
                raise item
            yield item
            if item.finished:
                return

    async def abort(self, request_id: str) -> None:
        await self.runtime.abort(request_id)

    async def ready(self) -> bool:
        return self.runtime.ready and not self.runtime.closed

    def plan_json(self) -> dict[str, Any] | None:
        return self.runtime.plan.to_dict()

    def state(self) -> BackendState:
        rt = self.runtime
        rows: list[ReplicaState] = []
        for g in rt.plan.groups:
            s = rt.live.stats.get(g.id)
            rows.append(
                {
                    "replica": g.id,
                    "role": g.phase,
                    "num_running": s.running if s else 0,
                    "num_waiting": s.waiting if s else 0,
                    "kv_cache_usage": s.kv_cache_usage if s else 0.0,
                }
            )
        return {"replicas": rows, "usd_per_hour": rt.plan.cost_per_hour}
