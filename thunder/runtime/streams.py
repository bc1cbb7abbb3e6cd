"""`StreamTable`: one asyncio queue of `TokenDelta`s per open request, fed from device step reports.

The first token comes from the prefill device and the rest from the decode device, over different links,
so deltas are put back in order by their `start` index before a client sees them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from thunder.runtime.messages import Delta
from thunder.server.backend import TokenDelta

__all__ = ["StreamFailed", "StreamTable"]


class StreamFailed(RuntimeError):
    """The request cannot finish (its replica died or rejected it); the message says why."""


@dataclass(slots=True)
class _Stream:
    queue: asyncio.Queue[TokenDelta | StreamFailed]
    next_start: int = 0
    pending: dict[int, Delta] = field(default_factory=dict)


class StreamTable:
    """Open streams by request id. Single event loop; not thread-safe."""

    def __init__(self) -> None:
        self._streams: dict[str, _Stream] = {}

    def __len__(self) -> int:
        return len(self._streams)

    def __contains__(self, request_id: str) -> bool:
        return request_id in self._streams

    def open(self, request_id: str) -> asyncio.Queue[TokenDelta | StreamFailed]:
        if request_id in self._streams:
            raise ValueError(f"request_id={request_id!r} is already streaming; request ids must be unique")
        stream = self._streams[request_id] = _Stream(asyncio.Queue())
        return stream.queue

    def close(self, request_id: str) -> bool:
        """Forget a stream; True if it was open."""
        return self._streams.pop(request_id, None) is not None

    def fail(self, request_id: str, reason: str) -> None:
        stream = self._streams.pop(request_id, None)
        if stream is not None:
            stream.queue.put_nowait(StreamFailed(reason))

    def fail_all(self, reason: str) -> None:
        for request_id in list(self._streams):
            self.fail(request_id, reason)

    def deliver(self, delta: Delta) -> bool:
        """Queue `delta` (and any that were waiting for it) in order; True once the stream finished."""
        stream = self._streams.get(delta.request_id)
        if stream is None:
            return False  # closed (client gone, aborted): late output is dropped
        if delta.start != stream.next_start:
            stream.pending[delta.start] = delta
            return False
        while True:
            stream.next_start += len(delta.token_ids)
            stream.queue.put_nowait(
                TokenDelta(
                    token_ids=delta.token_ids,
                    text=delta.text,
                    finished=delta.finished,
                    finish_reason=delta.finish_reason,
                    num_prompt_tokens=delta.num_prompt_tokens,
                    num_output_tokens=stream.next_start,
                )
            )
            if delta.finished:
                del self._streams[delta.request_id]
                return True
            nxt = stream.pending.pop(stream.next_start, None)
            if nxt is None:
                return False
            delta = nxt
