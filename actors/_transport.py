"""TCP framing on asyncio: a `BufferedProtocol` that batches outgoing frames and receives big bodies in place.

Writes queued in one loop tick are coalesced into one ``writelines`` (frame batching). Reads land in a
256 KiB staging buffer and are cut into frames there; a frame of 64 KiB or more is received straight into its
own buffer, so a 10 MB tensor is copied once (kernel to its final home).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any, Protocol, final

__all__ = ["FrameProtocol", "FrameSink"]

STAGE_BYTES = 1 << 18
DIRECT_BYTES = 1 << 16
_LEN = struct.Struct("<Q")


class FrameSink(Protocol):
    """What the protocol reports to (a `Link`)."""

    def frame_received(self, body: memoryview, owned: bool) -> None: ...
    def connection_lost(self, exc: Exception | None) -> None: ...


@final
class FrameProtocol(asyncio.BufferedProtocol):
    """Length-prefixed frames over one TCP connection. Not thread-safe."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.sink: FrameSink | None = None
        self.transport: asyncio.Transport | None = None
        self.connected: asyncio.Future[None] = loop.create_future()
        self._stage = bytearray(STAGE_BYTES)
        self._view = memoryview(self._stage)
        self._fill = 0
        self._big: bytearray | None = None
        self._big_fill = 0
        self.chunks: list[Any] = []
        self.tail = bytearray()
        self._flush_handle: asyncio.Handle | None = None
        self.write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self.closed = False

    # -- connection ------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio classes
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not self.connected.done():
            self.connected.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        if self.sink is not None:
            self.sink.connection_lost(exc)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.flush()
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- writing ---------------------------------------------------------------------------------------
    def schedule_flush(self) -> None:
        """Call after appending to `chunks`/`tail`; writes them once, at the end of this loop tick."""
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_handle = None
        if self.closed or self.transport is None:
            self.chunks.clear()
            self.tail = bytearray()
            return
        chunks, tail = self.chunks, self.tail
        if chunks:
            if tail:
                chunks.append(tail)
            self.chunks = []
            self.transport.writelines(chunks)
        elif tail:
            self.transport.write(tail)
        self.tail = bytearray()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self._drain = None

    async def drain(self) -> None:
        """Wait while the transport's write buffer is above its high-water mark."""
        if self.write_paused and not self.closed:
            if self._drain is None:
                self._drain = self.loop.create_future()
            await asyncio.shield(self._drain)

    # -- reading ---------------------------------------------------------------------------------------
    def get_buffer(self, sizehint: int) -> memoryview:
        if self._big is not None:
            return memoryview(self._big)[self._big_fill :]
        return self._view[self._fill :]

    def buffer_updated(self, nbytes: int) -> None:
        big = self._big
        if big is not None:
            self._big_fill += nbytes
            if self._big_fill == len(big):
                self._big = None
                self._deliver(memoryview(big), owned=True)
            return
        self._fill += nbytes
        self._cut_frames()

    def _cut_frames(self) -> None:
        stage, view, fill, pos = self._stage, self._view, self._fill, 0
        while fill - pos >= 8 and self._big is None:
            (body_len,) = _LEN.unpack_from(stage, pos)
            end = pos + 8 + body_len
            if end <= fill:
                self._deliver(view[pos + 8 : end], owned=False)
                pos = end
            elif body_len >= DIRECT_BYTES or end - pos > STAGE_BYTES:
                have = fill - pos - 8
                self._big = big = bytearray(body_len)
                big[:have] = view[pos + 8 : fill]
                self._big_fill = have
                pos = fill
            else:
                break
        if pos:
            rest = fill - pos
            # NOTE: the tail may overlap its destination; copy it out first so the move is memmove-safe.
            stage[:rest] = view[pos:fill] if rest <= pos else bytes(view[pos:fill])
            self._fill = rest

    def _deliver(self, body: memoryview, owned: bool) -> None:
        if self.sink is not None and not self.closed:
            self.sink.frame_received(body, owned)
