"""One request's token stream from the backend: overload surfaced early, metrics recorded, abort on exit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from thunder.metrics import ServingMetrics
from thunder.server.backend import Backend, GenerateRequest, Overloaded, TokenDelta
from thunder.server.errors import overloaded


class Generation:
    """Async iterator over a request's `TokenDelta`s; the first one is already fetched when you get it.

    Tracks what the client has been sent (tokens, text) so the handler can build `usage` and the final
    response from one place.
    """

    def __init__(
        self, request: GenerateRequest, stream: AsyncIterator[TokenDelta], first: TokenDelta
    ) -> None:
        self.request = request
        self._stream = stream
        self._pending: TokenDelta | None = first
        self.first_token_time: float | None = None
        self.finished = first.finished
        self.finish_reason: str | None = None
        self.num_prompt_tokens = first.num_prompt_tokens
        self.num_output_tokens = 0
        self.text_parts: list[str] = []

    def __aiter__(self) -> Generation:
        return self

    async def __anext__(self) -> TokenDelta:
        if self._pending is not None:
            delta, self._pending = self._pending, None
        elif self.finished:
            raise StopAsyncIteration
        else:
            try:
                delta = await anext(self._stream)
            except StopAsyncIteration:
                raise RuntimeError(
                    f"backend stream for {self.request.request_id} ended without a finished delta"
                ) from None
        self._absorb(delta)
        return delta

    def _absorb(self, delta: TokenDelta) -> None:
        if delta.token_ids and self.first_token_time is None:
            self.first_token_time = time.monotonic()
        self.num_output_tokens = delta.num_output_tokens
        self.num_prompt_tokens = delta.num_prompt_tokens
        self.text_parts.append(delta.text)
        if delta.finished:
            self.finished = True
            self.finish_reason = delta.finish_reason

    @property
    def text(self) -> str:
        return "".join(self.text_parts)


@asynccontextmanager
async def open_generation(
    backend: Backend, metrics: ServingMetrics, request: GenerateRequest
) -> AsyncIterator[Generation]:
    """Start `request` on `backend`; yields a `Generation` whose first delta has already arrived.

    Raises `ApiError(503)` when the backend is overloaded (before any byte is sent to the client). On
    exit before the final delta — client disconnect, write error, cancellation — calls
    `backend.abort(request_id)` so its pages are freed.
    """
    stream: AsyncIterator[TokenDelta] | None = None
    gen: Generation | None = None
    metrics.num_requests_in_flight.labels(metrics.model_name).inc()
    try:
        try:
            stream = backend.generate(request)
            first = await anext(stream)
        except Overloaded as exc:
            stream = None  # never admitted: nothing to abort
            raise overloaded(exc.retry_after_s, exc.reason) from None
        gen = Generation(request, stream, first)
        yield gen
    finally:
        metrics.num_requests_in_flight.labels(metrics.model_name).dec()
        if gen is not None and gen.finished:
            _record(metrics, gen)
        elif stream is not None:
            # NOTE: shielded so a second cancellation (server shutdown) cannot skip freeing the pages.
            await asyncio.shield(backend.abort(request.request_id))
        if stream is not None and hasattr(stream, "aclose"):
            await stream.aclose()


def _record(metrics: ServingMetrics, gen: Generation) -> None:
    now = time.monotonic()
    arrival = gen.request.arrival_time
    metrics.record_request(
        ttft_s=None if gen.first_token_time is None else gen.first_token_time - arrival,
        e2e_s=now - arrival,
        num_prompt_tokens=gen.num_prompt_tokens,
        num_output_tokens=gen.num_output_tokens,
        finish_reason=gen.finish_reason or "unknown",
    )


__all__ = ["Generation", "open_generation"]
