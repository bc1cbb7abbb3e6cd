"""Progress watchdog: an incarnation that holds work and makes no progress for `watchdog_s` is hung."""

from __future__ import annotations

from typing import TYPE_CHECKING, final

from ._messages import Reason

if TYPE_CHECKING:
    from ._cell import Cell

__all__ = ["Watchdog"]

CHECKS_PER_PERIOD = 4
"""Checks per `watchdog_s`: a hang is declared between 1.0x and 1.25x `watchdog_s` after the last progress."""


@final
class Watchdog:
    """Polls a cell's progress counter on the loop clock (SGLang `forward_ct` / xoscar poll style).

    Progress = a handler finished or the actor called `Actor.progress()`. Work = an in-flight or queued
    message, a running interleaved handler, or `Actor.holds_work()`. A hung cell is killed with reason
    ``hung`` and handled like a crash by its supervisor (its in-flight message counts toward poison).

    NOTE: this sees a handler stuck in an `await`; a handler that blocks the whole loop stops the watchdog
    too. For actors in other processes the node heartbeat catches that case.
    """

    __slots__ = ("_cell", "_period", "_seen", "_since", "_handle")

    def __init__(self, cell: Cell, watchdog_s: float) -> None:
        if not watchdog_s > 0:
            raise ValueError(f"watchdog_s={watchdog_s!r}: must be > 0 seconds (or None to disable)")
        self._cell = cell
        self._period = float(watchdog_s)
        self._seen = cell.progress
        self._since = cell.loop.time()
        self._handle = cell.loop.call_later(self._period / CHECKS_PER_PERIOD, self._check)

    def cancel(self) -> None:
        self._handle.cancel()

    def _check(self) -> None:
        cell = self._cell
        if not cell.alive:
            return
        now = cell.loop.time()
        if cell.progress != self._seen or not cell.holds_work():
            self._seen = cell.progress
            self._since = now
        elif now - self._since >= self._period:
            cell.kill(Reason.HUNG, f"no progress for {now - self._since:.3g}s (watchdog_s={self._period:g})")
            return
        self._handle = cell.loop.call_later(self._period / CHECKS_PER_PERIOD, self._check)
