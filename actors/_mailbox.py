"""Bounded FIFO mailbox: awaiting senders feel backpressure, non-waiting senders get `Overloaded`."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any, final

from ._errors import ActorDead, Overloaded

__all__ = ["Mailbox", "MailboxStatistics"]


@dataclass(frozen=True, slots=True, kw_only=True)
class MailboxStatistics:
    """A snapshot of one mailbox (anyio `MemoryObjectStreamStatistics` style)."""

    used: int
    """Messages queued now."""
    capacity: int
    """Most messages the mailbox holds before senders wait (`tell`) or fail (`try_tell`)."""
    waiting_senders: int
    """Senders suspended in `tell` until space frees up."""
    peak: int
    """Highest `used` seen since the mailbox opened."""


@final
class Mailbox:
    """One consumer (the actor's task), many producers. Not thread-safe: use it from its loop only.

    NOTE: system messages (`put_system`) bypass the capacity so that a full mailbox never loses a
    `ChildDown` or a stop request.
    """

    __slots__ = ("_items", "capacity", "_getter", "_putters", "_peak", "_closed_reason", "_loop")

    def __init__(self, capacity: int, loop: asyncio.AbstractEventLoop) -> None:
        if capacity < 1:
            raise ValueError(f"mailbox capacity={capacity}: must be >= 1; try 1024")
        self._items: deque[Any] = deque()
        self.capacity = capacity
        self._getter: asyncio.Future[None] | None = None
        self._putters: deque[asyncio.Future[None]] = deque()
        self._peak = 0
        self._closed_reason: str | None = None
        self._loop = loop

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed_reason is not None

    def statistics(self) -> MailboxStatistics:
        waiting = sum(1 for fut in self._putters if not fut.done())
        return MailboxStatistics(
            used=len(self._items), capacity=self.capacity, waiting_senders=waiting, peak=self._peak
        )

    def _append(self, item: Any) -> None:
        items = self._items
        items.append(item)
        if len(items) > self._peak:
            self._peak = len(items)
        getter = self._getter
        if getter is not None:
            self._getter = None
            if not getter.done():
                getter.set_result(None)

    def put_nowait(self, item: Any) -> None:
        """Enqueue or raise `Overloaded` (full) / `ActorDead` (closed)."""
        if self._closed_reason is not None:
            raise ActorDead(self._closed_reason)
        if len(self._items) >= self.capacity:
            raise Overloaded(
                f"mailbox full ({len(self._items)}/{self.capacity}); retry later, await tell() to wait "
                "for space, or raise mailbox_capacity"
            )
        self._append(item)

    async def put(self, item: Any) -> None:
        """Enqueue, waiting while the mailbox is full (backpressure). Raises `ActorDead` if it closes."""
        while len(self._items) >= self.capacity:
            if self._closed_reason is not None:
                raise ActorDead(self._closed_reason)
            waiter = self._loop.create_future()
            self._putters.append(waiter)
            try:
                await waiter
            except BaseException:
                waiter.cancel()
                # NOTE: pass our wake-up on if we were woken and then cancelled, or a slot goes unused.
                if len(self._items) < self.capacity:
                    self._wake_putter()
                raise
        if self._closed_reason is not None:
            raise ActorDead(self._closed_reason)
        self._append(item)

    def put_system(self, item: Any) -> None:
        """Enqueue ignoring capacity (system messages); silently dropped once closed."""
        if self._closed_reason is None:
            self._append(item)

    def put_front(self, item: Any) -> None:
        """Enqueue at the head ignoring capacity (a message carried over from a crashed incarnation)."""
        self._items.appendleft(item)
        self._peak = max(self._peak, len(self._items))

    def popleft(self) -> Any:
        item = self._items.popleft()
        if self._putters:
            self._wake_putter()
        return item

    def _wake_putter(self) -> None:
        putters = self._putters
        while putters:
            waiter = putters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def wait(self) -> asyncio.Future[None]:
        """A future that completes when an item arrives or `wake()` is called (one consumer only)."""
        fut = self._loop.create_future()
        self._getter = fut
        if self._items:
            self._getter = None
            fut.set_result(None)
        return fut

    def wait_arrival(self) -> asyncio.Future[None]:
        """A future that completes at the next put (even if items are already queued) or `wake()`."""
        fut = self._loop.create_future()
        self._getter = fut
        return fut

    def wake(self) -> None:
        getter = self._getter
        if getter is not None:
            self._getter = None
            if not getter.done():
                getter.set_result(None)

    def close(self, reason: str) -> list[Any]:
        """Refuse further puts, fail waiting senders with `ActorDead`, return what was still queued."""
        self._closed_reason = reason
        left = list(self._items)
        self._items.clear()
        while self._putters:
            waiter = self._putters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the woken sender sees the closed mailbox and raises ActorDead
        self.wake()
        return left
