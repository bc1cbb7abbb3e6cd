"""Deterministic test kit: run an actor system on a virtual clock, and probe actors that record messages.

`run_virtual(main())` runs a coroutine on an event loop whose `time()` is virtual: whenever every task is
waiting and only timers are pending, the clock jumps straight to the next timer (trio `MockClock` with
``autojump_threshold=0``). Ask timeouts, backoffs and watchdogs therefore fire exactly, without real sleeping.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

from ._actor import Actor, handler
from ._system import ActorSystem

__all__ = ["Probe", "VirtualClockLoop", "run_virtual", "spawn_probe"]

_T = TypeVar("_T")


class _AutojumpSelector(selectors.BaseSelector):
    """Wraps a real selector: polls I/O without blocking and, when idle, advances the loop's clock."""

    def __init__(self, real: selectors.BaseSelector, threshold: float) -> None:
        self._real = real
        self._threshold = threshold
        self.loop: VirtualClockLoop | None = None

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.get_key(fileobj)

    def get_map(self) -> Any:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout <= 0:
            return self._real.select(0)
        # NOTE: real I/O (the loop's self-pipe, sockets) still wakes us; only waiting on timers is virtual.
        ready = self._real.select(self._threshold if timeout is None else min(timeout, self._threshold))
        if ready:
            return ready
        if timeout is None:  # no timer pending at all: only real I/O can wake us
            return self._real.select(None)
        assert self.loop is not None
        self.loop.advance(timeout)
        return []


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """A selector event loop with a virtual `time()` that autojumps to the next timer when idle.

    Args:
        autojump_threshold: real seconds to wait for I/O before jumping (0 = jump at once; raise it when the
            test also talks to real processes or sockets).
    """

    def __init__(self, autojump_threshold: float = 0.0) -> None:
        selector = _AutojumpSelector(selectors.DefaultSelector(), autojump_threshold)
        super().__init__(selector)
        selector.loop = self
        self._virtual_now = 0.0

    def time(self) -> float:
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        """Move the virtual clock forward (never back)."""
        if seconds > 0:
            self._virtual_now += seconds


def run_virtual(main: Coroutine[Any, Any, _T], *, autojump_threshold: float = 0.0) -> _T:
    """Run `main` to completion on a fresh `VirtualClockLoop` and close it."""
    with asyncio.Runner(loop_factory=lambda: VirtualClockLoop(autojump_threshold)) as runner:
        return runner.run(main)


class Probe(Actor):
    """Records every message it receives in `inbox` and answers asks with None."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()

    @handler(object)
    def handle(self, msg: Any) -> None:
        self.inbox.put_nowait(msg)

    async def expect(self, kind: type[_T], timeout_s: float = 5.0) -> _T:
        """The next message; fails if it is not a `kind` or none arrives within `timeout_s` (loop clock)."""
        msg = await asyncio.wait_for(self.inbox.get(), timeout_s)
        if not isinstance(msg, kind):
            raise AssertionError(f"expected a {kind.__qualname__}, got {msg!r}")
        return msg


async def spawn_probe(system: ActorSystem, name: str | None = None) -> tuple[Any, Probe]:
    """Spawn a `Probe`; returns ``(ref, probe)`` so a test can `await probe.expect(...)`."""
    ref = await system.spawn(Probe, name=name)
    cell = system.local_cell(ref.actor_id)
    assert cell is not None
    return ref, cell.actor  # type: ignore[return-value]
