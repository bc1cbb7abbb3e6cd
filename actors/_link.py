"""`Link`: one authenticated connection to a peer node, and the `Target` of refs to actors living there."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import logging
import secrets
from collections import deque
from typing import TYPE_CHECKING, Any, final

from ._cell import Cell, Envelope
from ._codec import Codec, UndecodableFrame
from ._errors import (
    ActorDead,
    ActorError,
    AskTimeout,
    CodecError,
    NodeAuthError,
    NodeError,
    Overloaded,
    error_from_wire,
)
from ._mailbox import MailboxStatistics
from ._messages import ChildDown
from ._ref import ActorRef, UnroutableTarget
from ._transport import FrameProtocol

if TYPE_CHECKING:
    from ._node import Network

__all__ = ["Kind", "Link"]

log = logging.getLogger("actors")


class Kind:
    """Frame kinds. Handshake kinds are the only ones accepted before authentication."""

    HELLO, CHALLENGE, PROOF, WELCOME, REJECT = 1, 2, 3, 4, 5
    TELL, ASK, REPLY, FAIL, WATCH, DOWN, PING = 10, 11, 12, 13, 14, 15, 16


def _mac(token: str, *parts: str) -> str:
    return hmac.new(token.encode(), "|".join(parts).encode(), hashlib.sha256).hexdigest()


@final
class RemoteReply:
    """The `Reply` of an ask that arrived over a link: the answer goes back as a REPLY or FAIL frame."""

    __slots__ = ("_link", "_corr", "_done")

    def __init__(self, link: Link, corr: int) -> None:
        self._link, self._corr, self._done = link, corr, False

    def done(self) -> bool:
        return self._done or self._link.closed

    def set_result(self, value: Any) -> None:
        if self.done():
            return
        self._done = True
        try:
            self._link.send(Kind.REPLY, 0, self._corr, value)
        except CodecError as exc:
            self._link.send_fail(self._corr, exc)

    def set_exception(self, exc: BaseException) -> None:
        if not self.done():
            self._done = True
            self._link.send_fail(self._corr, exc)


@final
class Link:
    """Frames to and from one peer. Created by `Network` for each accepted or dialled connection."""

    def __init__(self, network: Network, proto: FrameProtocol, *, dialer: bool) -> None:
        self.network = network
        self.system = network.system
        self.loop = proto.loop
        self.proto = proto
        proto.sink = self
        self.codec = Codec(network.resolve_ref)
        self.dialer = dialer
        self.peer_id = ""
        self.up: asyncio.Future[None] = self.loop.create_future()
        self.closed = False
        self.close_reason = ""
        self._nonce = secrets.token_hex(16)
        self._peer_nonce = ""
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._corr = itertools.count(1)
        self._backlog: deque[tuple[Cell, Any]] = deque()
        self._heard = True
        self._authenticated = False
        self._cells = self.system._cells  # NOTE: read-only alias of the live-actor table (hot path)
        self._beat: asyncio.TimerHandle | None = None
        self._check: asyncio.TimerHandle | None = None
        self.finished: asyncio.Future[str] = self.loop.create_future()
        """Completes with the close reason."""

    def __repr__(self) -> str:
        return f"<Link {self.system.node_id}->{self.peer_id or '?'}{' closed' if self.closed else ''}>"

    # -- sending ---------------------------------------------------------------------------------------
    def send(self, kind: int, to: int, corr: int, msg: Any) -> None:
        proto = self.proto
        proto.tail = self.codec.write_frame(proto.chunks, proto.tail, kind, to, corr, msg)
        proto.schedule_flush()

    def send_fail(self, corr: int, exc: BaseException) -> None:
        name = type(exc).__name__ if isinstance(exc, ActorError) else "ActorError"
        self.send(Kind.FAIL, 0, corr, [name, str(exc) if isinstance(exc, ActorError) else repr(exc)])

    def send_down(self, down: ChildDown) -> None:
        if not self.closed:
            self.send(Kind.DOWN, down.ref.actor_id, 0, [down.reason, down.detail, down.poisoned])

    # -- Target ----------------------------------------------------------------------------------------
    def _dead(self) -> ActorDead:
        return ActorDead(f"node {self.peer_id} is unreachable ({self.close_reason})")

    async def tell(self, actor_id: int, msg: Any) -> None:
        if self.closed:
            raise self._dead()
        proto = self.proto
        proto.tail = self.codec.write_frame(proto.chunks, proto.tail, Kind.TELL, actor_id, 0, msg)
        proto.schedule_flush()
        if proto.write_paused:
            await proto.drain()

    def try_tell(self, actor_id: int, msg: Any) -> None:
        if self.closed:
            raise self._dead()
        if self.proto.write_paused:
            raise Overloaded(f"the link to node {self.peer_id} is backed up; retry later")
        self.send(Kind.TELL, actor_id, 0, msg)

    async def ask(self, actor_id: int, msg: Any, timeout_s: float) -> Any:
        if self.closed:
            raise self._dead()
        corr = next(self._corr)
        fut: asyncio.Future[Any] = self.loop.create_future()
        self.send(Kind.ASK, actor_id, corr, msg)
        self._pending[corr] = fut
        handle = self.loop.call_later(timeout_s, _expire, fut, self.peer_id, actor_id, msg, timeout_s)
        try:
            return await fut
        finally:
            handle.cancel()
            self._pending.pop(corr, None)

    def statistics(self, actor_id: int) -> MailboxStatistics:
        raise ActorError(f"mailbox statistics live on node {self.peer_id}; ask an actor there to report them")

    # -- handshake -------------------------------------------------------------------------------------
    def start(self) -> None:
        """Begin the handshake (the dialler speaks first); unauthenticated links close after a timeout."""
        if self.dialer:
            self.send(Kind.HELLO, 0, 0, [self.system.node_id, self._nonce])
        self.loop.call_later(self.network.handshake_timeout_s, self._handshake_deadline)

    def _handshake_deadline(self) -> None:
        if not self.up.done():
            self.close("handshake timed out", abort=True)

    def _handshake(self, kind: int, msg: Any) -> None:
        token, me = self.system.token, self.system.node_id
        if kind == Kind.HELLO and not self.dialer:
            self.peer_id, self._peer_nonce = str(msg[0]), str(msg[1])
            self.send(Kind.CHALLENGE, 0, 0, [me, self._nonce, _mac(token, "A", self._peer_nonce, self._nonce)])
        elif kind == Kind.CHALLENGE and self.dialer:
            self.peer_id, self._peer_nonce, mac = str(msg[0]), str(msg[1]), str(msg[2])
            if not hmac.compare_digest(mac, _mac(token, "A", self._nonce, self._peer_nonce)):
                self._reject(f"node {self.peer_id} failed authentication (token mismatch)")
                return
            self.send(Kind.PROOF, 0, 0, [_mac(token, "C", self._peer_nonce, self._nonce)])
        elif kind == Kind.PROOF and not self.dialer and self.peer_id:
            if not hmac.compare_digest(str(msg[0]), _mac(token, "C", self._nonce, self._peer_nonce)):
                self._reject(f"node {self.peer_id} failed authentication (token mismatch)")
                return
            problem = self.network.admit(self)
            if problem:
                self._reject(problem)
                return
            self.send(Kind.WELCOME, 0, 0, None)
            self._become_up()
        elif kind == Kind.WELCOME and self.dialer and self.peer_id:
            problem = self.network.admit(self)
            if problem:
                self._reject(problem)
                return
            self._become_up()
        elif kind == Kind.REJECT:
            self._fail_handshake(NodeAuthError(f"node {self.peer_id or '?'} rejected us: {msg}"))
        else:
            self._reject(f"unexpected frame kind {kind} before authentication")

    def _reject(self, reason: str) -> None:
        log.warning("%r: %s", self, reason)
        self.send(Kind.REJECT, 0, 0, reason)
        self._fail_handshake(NodeAuthError(reason))

    def _fail_handshake(self, exc: NodeError) -> None:
        if not self.up.done():
            self.up.set_exception(exc)
        self.close(str(exc))

    def _become_up(self) -> None:
        self.up.set_result(None)
        self._authenticated = True
        self._beat = self.loop.call_later(self.network.heartbeat_s, self._ping)
        self._check = self.loop.call_later(self.network.heartbeat_timeout_s, self._check_heard)

    def _ping(self) -> None:
        if not self.closed:
            self.send(Kind.PING, 0, 0, None)
            self._beat = self.loop.call_later(self.network.heartbeat_s, self._ping)

    def _check_heard(self) -> None:
        """Pings go out every `heartbeat_s`; a whole `heartbeat_timeout_s` without any frame means down."""
        if self.closed:
            return
        if not self._heard:
            self.close(f"no frame for {self.network.heartbeat_timeout_s:g}s (heartbeat timeout)", abort=True)
            return
        self._heard = False
        self._check = self.loop.call_later(self.network.heartbeat_timeout_s, self._check_heard)

    # -- receiving -------------------------------------------------------------------------------------
    def frame_received(self, body: memoryview, owned: bool) -> None:
        self._heard = True
        try:
            kind, to, corr, msg = self.codec.decode(body, owned)
        except UndecodableFrame as exc:
            log.warning("%r: dropped an undecodable frame: %s", self, exc)
            if exc.kind == Kind.ASK:
                self.send_fail(exc.corr, exc)
            elif exc.kind == Kind.REPLY:
                self._resolve(exc.corr, exc)
            return
        except Exception as exc:
            self.close(f"corrupt frame: {exc!r}", abort=True)
            return
        if kind == Kind.TELL:
            self._deliver(to, msg)
        elif kind == Kind.ASK:
            self._deliver(to, Envelope(msg, RemoteReply(self, corr)))
        elif kind == Kind.REPLY:
            self._resolve(corr, msg)
        elif kind == Kind.FAIL:
            self._resolve(corr, error_from_wire(str(msg[0]), str(msg[1])))
        elif not self.up.done():
            self._handshake(kind, msg)
        elif kind == Kind.WATCH:
            probe = ActorRef(self.system.node_id, to, None, UnroutableTarget(""))
            self.system.on_down(probe, self.send_down)
        elif kind == Kind.DOWN:
            self.network.remote_down(self, to, str(msg[0]), str(msg[1]), bool(msg[2]))
        elif kind != Kind.PING:
            log.warning("%r: unknown frame kind %d ignored", self, kind)

    def _resolve(self, corr: int, value: Any) -> None:
        fut = self._pending.pop(corr, None)
        if fut is None or fut.done():
            return  # a late reply: its asker already timed out
        if isinstance(value, BaseException):
            fut.set_exception(value)
        else:
            fut.set_result(value)

    def _deliver(self, to: int, item: Any) -> None:
        if not self._authenticated:
            self.close("message before authentication", abort=True)
            return
        cell = self._cells.get(to)
        if cell is None:
            _fail(item, ActorDead(f"{self.system.node_id}/{to} is not alive ({self.system.reason_of(to)})"))
            return
        if self._backlog:
            self._backlog.append((cell, item))
            return
        mb = cell.mailbox
        if mb._closed_reason is None and len(mb._items) < mb.capacity:
            mb._append(item)
            return
        # NOTE: a full mailbox stops reading this link (TCP backpressure) instead of dropping the message.
        self._backlog.append((cell, item))
        assert self.proto.transport is not None
        self.proto.transport.pause_reading()
        self.loop.create_task(self._drain_backlog())

    async def _drain_backlog(self) -> None:
        try:
            while self._backlog and not self.closed:
                cell, item = self._backlog[0]
                try:
                    await cell.mailbox.put(item)
                except ActorDead as exc:
                    _fail(item, exc)
                self._backlog.popleft()
        finally:
            if not self.closed and self.proto.transport is not None:
                self.proto.transport.resume_reading()

    # -- closing ---------------------------------------------------------------------------------------
    def connection_lost(self, exc: Exception | None) -> None:
        self.close(f"connection lost ({exc!r})" if exc else "connection closed")

    def close(self, reason: str, *, abort: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        for timer in (self._beat, self._check):
            if timer is not None:
                timer.cancel()
        if abort:
            self.proto.abort()
        else:
            self.proto.close()
        dead = self._dead()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ActorDead(str(dead)))
        self._pending.clear()
        for _cell, item in self._backlog:
            _fail(item, dead)
        self._backlog.clear()
        if not self.up.done():
            self.up.set_exception(NodeError(f"link to {self.peer_id or 'peer'} closed: {reason}"))
            self.up.exception()  # mark retrieved: the dialler reports its own error
        self.network.link_down(self, reason)
        self.finished.set_result(reason)


def _fail(item: Any, exc: ActorError) -> None:
    if type(item) is Envelope and item.reply is not None and not item.reply.done():
        item.reply.set_exception(exc)


def _expire(fut: asyncio.Future[Any], node: str, actor_id: int, msg: Any, timeout_s: float) -> None:
    if not fut.done():
        fut.set_exception(
            AskTimeout(f"no reply from {node}/{actor_id} to {type(msg).__qualname__} within {timeout_s:g}s")
        )
