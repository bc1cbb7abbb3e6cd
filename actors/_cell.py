"""`Cell`: the runtime of one actor incarnation (its mailbox, its task, its death)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Protocol, final

from ._actor import Actor, Handler
from ._errors import ActorDead, ActorError, AskTimeout, PoisonMessage, UnknownMessage
from ._mailbox import Mailbox, MailboxStatistics
from ._messages import ChildDown, Reason
from ._ref import ActorRef

if TYPE_CHECKING:
    from ._system import ActorSystem

__all__ = ["Cell", "Envelope", "Reply", "describe"]

log = logging.getLogger("actors")

RETRY_HOLD_S = 30.0
"""How long a crashed message waits for a supervisor to restart its actor before failing `ActorDead`."""


class Reply(Protocol):
    """Where an ask's answer goes: an `asyncio.Future` locally, a link-backed reply for remote askers."""

    def done(self) -> bool: ...
    def set_result(self, value: Any, /) -> None: ...
    def set_exception(self, exc: BaseException, /) -> None: ...


@final
class Envelope:
    """A queued ask (``reply`` set) or a retried tell (``reply`` None); bare tells travel unwrapped."""

    __slots__ = ("msg", "reply", "attempts")

    def __init__(self, msg: Any, reply: Reply | asyncio.Future[Any] | None, attempts: int = 0) -> None:
        self.msg = msg
        self.reply = reply
        self.attempts = attempts


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _fail(item: Any, exc: ActorError) -> None:
    if type(item) is Envelope and item.reply is not None and not item.reply.done():
        item.reply.set_exception(exc)


def _expire(fut: asyncio.Future[Any], ref: ActorRef, msg: Any, timeout: float) -> None:
    if not fut.done():
        fut.set_exception(AskTimeout(f"no reply from {ref} to {type(msg).__qualname__} within {timeout:g}s"))


@final
class Cell:
    """One incarnation: a bounded mailbox drained by one task. It is the local `Target` of its ref."""

    def __init__(
        self, system: ActorSystem, actor_id: int, name: str | None, capacity: int, *, supervised: bool
    ) -> None:
        self.system = system
        self.loop = system.loop
        self.mailbox = Mailbox(capacity, self.loop)
        self.ref = ActorRef(system.node_id, actor_id, name, self)
        self.supervised = supervised
        self.actor: Actor = None  # type: ignore[assignment]  # set by bind()
        self.task: asyncio.Task[None] | None = None
        self.progress = 0
        self.current: Any = None
        self.stop_requested = False
        self.stop_reason = Reason.STOPPED
        self.kill_reason: tuple[str, str] | None = None
        self.side_tasks: set[asyncio.Task[None]] = set()
        self.serial_task: asyncio.Task[Any] | None = None
        self.terminated: asyncio.Future[ChildDown] = self.loop.create_future()
        self.down: ChildDown | None = None
        self.retry: Envelope | None = None
        self._retry_timer: asyncio.TimerHandle | None = None
        self._dispatch: dict[type, Handler | None] = {}
        self._interleaving = False

    def bind(self, actor: Actor) -> None:
        if not isinstance(actor, Actor):
            raise TypeError(f"the factory returned {actor!r}, not an Actor; spawn an Actor subclass")
        self.actor = actor
        actor._cell = self
        self._dispatch = dict(type(actor).handlers)
        self._interleaving = any(h.interleave for h in type(actor).handlers.values())

    # -- Target ----------------------------------------------------------------------------------------
    async def tell(self, actor_id: int, msg: Any) -> None:
        mb = self.mailbox
        if mb._closed_reason is None and len(mb._items) < mb.capacity:
            mb._append(msg)
        else:
            await mb.put(msg)

    def try_tell(self, actor_id: int, msg: Any) -> None:
        self.mailbox.put_nowait(msg)

    async def ask(self, actor_id: int, msg: Any, timeout_s: float) -> Any:
        loop = self.loop
        fut: asyncio.Future[Any] = loop.create_future()
        handle = loop.call_later(timeout_s, _expire, fut, self.ref, msg, timeout_s)
        try:
            mb = self.mailbox
            env = Envelope(msg, fut)
            if mb._closed_reason is None and len(mb._items) < mb.capacity:
                mb._append(env)
            else:
                await self._put_until_done(env, fut)
            return await fut
        finally:
            handle.cancel()

    async def _put_until_done(self, env: Envelope, fut: asyncio.Future[Any]) -> None:
        """Wait for mailbox space, giving up when the ask's future completes (timeout) first."""
        put = self.loop.create_task(self.mailbox.put(env))
        await asyncio.wait((put, fut), return_when=asyncio.FIRST_COMPLETED)
        if not put.done():
            put.cancel()
        elif put.exception() is not None:
            raise put.exception()  # type: ignore[misc]

    def statistics(self, actor_id: int) -> MailboxStatistics:
        return self.mailbox.statistics()

    # -- control ---------------------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self.down is None

    def holds_work(self) -> bool:
        return bool(self.current is not None or self.mailbox or self.side_tasks or self.actor.holds_work())

    def request_stop(self, *, normal: bool) -> None:
        """Stop after the in-flight handler returns; queued messages fail with `ActorDead`."""
        if not self.stop_requested:
            self.stop_requested = True
            self.stop_reason = Reason.NORMAL if normal else Reason.STOPPED
        self.mailbox.wake()

    def kill(self, reason: str, detail: str) -> None:
        """Cancel the incarnation's task now (no `on_stop`)."""
        if self.down is None and self.task is not None and self.kill_reason is None:
            self.kill_reason = (reason, detail)
            self.task.cancel()

    def take_retry(self) -> Envelope | None:
        """Hand the crashed message to the next incarnation (the supervisor's restart)."""
        env, self.retry = self.retry, None
        if self._retry_timer is not None:
            self._retry_timer.cancel()
        return env

    def release_retry(self) -> None:
        env = self.take_retry()
        if env is not None:
            _fail(env, ActorDead(f"{self.ref} was not restarted; its crashed message is dropped"))

    # -- the task --------------------------------------------------------------------------------------
    async def main(self, started: asyncio.Future[None]) -> None:
        try:
            await self.actor.on_start()
        except asyncio.CancelledError:
            self._finish(Reason.KILLED, "cancelled during on_start")
            if not started.done():
                started.set_exception(ActorDead(f"{self.ref} was killed while starting"))
            return
        except Exception as exc:
            self._finish(Reason.CRASHED, describe(exc))
            started.set_exception(exc)
            return
        started.set_result(None)
        try:
            await self._serve()
            reason, detail = self.stop_reason, ""
        except asyncio.CancelledError:
            reason, detail = self.kill_reason or (Reason.KILLED, "cancelled")
        except Exception as exc:
            reason, detail = Reason.CRASHED, describe(exc)
            log.warning("%r crashed on %s", self.ref, _label(self.current), exc_info=exc)
        if reason not in (Reason.KILLED, Reason.HUNG):
            try:
                await self.actor.on_stop()
            except asyncio.CancelledError:
                reason, detail = self.kill_reason or (Reason.KILLED, "cancelled in on_stop")
            except Exception:
                log.exception("%r: on_stop raised (ignored)", self.ref)
        self._finish(reason, detail)

    def _entry(self, msg_type: type) -> Handler | None:
        try:
            return self._dispatch[msg_type]
        except KeyError:
            pass
        found = None
        for base in msg_type.__mro__[1:]:
            found = self._dispatch.get(base)
            if found is not None:
                break
        self._dispatch[msg_type] = found
        return found

    async def _serve(self) -> None:
        mb = self.mailbox
        items = mb._items
        actor = self.actor
        dispatch = self._dispatch
        item = msg = reply = result = None
        while not self.stop_requested:
            if not items:
                item = msg = reply = result = None  # NOTE: drop the last message while idle (frees buffers)
                await mb.wait()
                continue
            item = mb.popleft()
            if type(item) is Envelope:
                msg, reply = item.msg, item.reply
                if reply is not None and reply.done():
                    continue  # the asker timed out or was cancelled: skip the stale request
            else:
                msg, reply = item, None
            entry = dispatch.get(type(msg)) or self._entry(type(msg))
            if entry is None:
                self._unknown(msg, reply)
                continue
            if entry.interleave:
                self._start_side(entry, msg, reply)
                continue
            self.current = item
            result = entry.func(actor, msg)
            if entry.is_async:
                result = await (self._serial(result) if self._interleaving else result)
            self.current = None
            self.progress += 1
            if reply is not None and not reply.done():
                reply.set_result(result)

    def _unknown(self, msg: Any, reply: Any) -> None:
        known = ", ".join(sorted(t.__qualname__ for t in type(self.actor).handlers)) or "none"
        err = UnknownMessage(
            f"{type(self.actor).__qualname__} has no handler for {type(msg).__qualname__} (handles: {known})"
        )
        if reply is not None:
            if not reply.done():
                reply.set_exception(err)
        else:
            log.warning("%r dropped a message: %s", self.ref, err)

    # -- interleaving ----------------------------------------------------------------------------------
    def _start_side(self, entry: Handler, msg: Any, reply: Any) -> None:
        task = self.loop.create_task(self._run_side(entry, msg, reply))
        self.side_tasks.add(task)
        task.add_done_callback(self._side_done)

    async def _run_side(self, entry: Handler, msg: Any, reply: Any) -> None:
        try:
            result = entry.func(self.actor, msg)
            if entry.is_async:
                result = await result
        except Exception as exc:
            if reply is not None and not reply.done():
                reply.set_exception(ActorDead(f"{self.ref} crashed in {_label(msg)}: {describe(exc)}"))
            raise
        self.progress += 1
        if reply is not None and not reply.done():
            reply.set_result(result)

    def _side_done(self, task: asyncio.Task[None]) -> None:
        self.side_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.warning("%r crashed in an interleaved handler", self.ref, exc_info=exc)
            self.kill(Reason.CRASHED, describe(exc))  # type: ignore[arg-type]

    async def _serial(self, coro: Any) -> Any:
        """Run a serial handler in its own task; while it is suspended, start queued interleaved messages.

        NOTE: interleaved messages overtake queued serial ones; serial messages keep their order.
        """
        task = self.loop.create_task(coro)
        self.serial_task = task
        mb = self.mailbox
        items = mb._items
        scanned = 0
        try:
            while not task.done():
                i = scanned
                while i < len(items):
                    item = items[i]
                    msg = item.msg if type(item) is Envelope else item
                    entry = self._entry(type(msg))
                    if entry is None or not entry.interleave:
                        i += 1
                        continue
                    del items[i]
                    if mb._putters:
                        mb._wake_putter()
                    self._start_side(entry, msg, item.reply if type(item) is Envelope else None)
                scanned = len(items)
                arrival = mb.wait_arrival()
                await asyncio.wait((task, arrival), return_when=asyncio.FIRST_COMPLETED)
                if not arrival.done():
                    mb.wake()
            return task.result()
        finally:
            self.serial_task = None
            if not task.done():
                task.cancel()

    # -- death -----------------------------------------------------------------------------------------
    def _finish(self, reason: str, detail: str) -> None:
        for task in list(self.side_tasks):
            task.cancel()
        dead = f"{self.ref} is dead ({reason}{': ' + detail if detail else ''})"
        current, self.current = self.current, None
        poisoned = False
        if current is not None and reason in (Reason.CRASHED, Reason.HUNG):
            poisoned = self._handle_crashed_message(current, dead, detail)
        elif current is not None:
            _fail(current, ActorDead(dead))
        for item in self.mailbox.close(dead):
            _fail(item, ActorDead(dead))
        self.down = ChildDown(self.ref, reason, detail, poisoned)
        self.system._cell_finished(self)
        self.terminated.set_result(self.down)

    def _handle_crashed_message(self, item: Any, dead: str, detail: str) -> bool:
        env = item if type(item) is Envelope else Envelope(item, None)
        if env.attempts >= 1:
            poison = PoisonMessage(
                f"{_label(env.msg)} crashed {type(self.actor).__qualname__} twice (last: {detail}); "
                "failed back instead of retried"
            )
            _fail(env, poison)
            if env.reply is None:
                log.error("%r: poison tell dropped: %s", self.ref, poison)
            return True
        if not self.supervised:
            _fail(env, ActorDead(dead))
            return False
        self.retry = Envelope(env.msg, env.reply, env.attempts + 1)
        self._retry_timer = self.loop.call_later(RETRY_HOLD_S, self.release_retry)
        return False


def _label(item: Any) -> str:
    msg = item.msg if type(item) is Envelope else item
    return type(msg).__qualname__

