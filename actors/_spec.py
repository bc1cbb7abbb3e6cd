"""Supervision as data: OTP strategy / restart names and defaults, as frozen dataclasses."""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._messages import ChildDown
from ._system import Factory

__all__ = ["Backoff", "ChildSpec", "Restart", "Strategy", "SupervisorSpec"]


class Strategy(enum.StrEnum):
    """Which children restart when one fails (Erlang/OTP names)."""

    ONE_FOR_ONE = "one_for_one"
    """Only the failed child."""
    ONE_FOR_ALL = "one_for_all"
    """All children: the others are stopped (newest first) and all restart in start order."""
    REST_FOR_ONE = "rest_for_one"
    """The failed child and every child started after it."""


class Restart(enum.StrEnum):
    """When a child that ended is restarted."""

    PERMANENT = "permanent"
    """Always."""
    TRANSIENT = "transient"
    """Only after an abnormal end (crash, hang, kill, node loss); a normal stop removes it."""
    TEMPORARY = "temporary"
    """Never; it is removed when it ends."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """Exponential restart delay: ``min(max_s, initial_s * factor**k)`` for the k-th quick restart in a row."""

    initial_s: float = 0.1
    max_s: float = 10.0
    factor: float = 2.0
    reset_after_s: float = 30.0
    """A child that stayed up this long starts again from `initial_s`."""

    def __post_init__(self) -> None:
        if not (0 <= self.initial_s <= self.max_s < math.inf):
            raise ValueError(f"Backoff initial_s={self.initial_s}, max_s={self.max_s}: need 0 <= initial <= max")
        if self.factor < 1:
            raise ValueError(f"Backoff factor={self.factor}: must be >= 1; try 2.0")

    def delay_s(self, streak: int) -> float:
        return min(self.max_s, self.initial_s * self.factor ** max(0, streak))


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisorSpec:
    """How a supervisor reacts to failures. Defaults are OTP's: at most 1 restart in 5 s."""

    strategy: Strategy = Strategy.ONE_FOR_ONE
    intensity: int = 1
    """Most restarts allowed within `period_s`; one more stops the subtree and escalates to the parent."""
    period_s: float = 5.0

    def __post_init__(self) -> None:
        if self.intensity < 0:
            raise ValueError(f"intensity={self.intensity}: must be >= 0 (0 = never restart); OTP default is 1")
        if not 0 < self.period_s < math.inf:
            raise ValueError(f"period_s={self.period_s}: must be a finite number of seconds > 0; try 5.0")


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildSpec:
    """One supervised child. A restart always calls `factory` again (a fresh constructor)."""

    id: str
    factory: Factory
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    restart: Restart = Restart.PERMANENT
    shutdown_s: float = 5.0
    """Graceful stop budget; after it the child is killed."""
    watchdog_s: float | None = None
    """Declare the child hung after this long holding work without progress (None = no watchdog)."""
    mailbox_capacity: int | None = None
    placement: str = "local"
    """``"local"`` (this process), ``"process"`` (its own child OS process, kept across restarts while it
    lives, replaced when it dies) or the node id of a linked node."""
    backoff: Backoff | None = None
    replacement: Callable[[ChildSpec, ChildDown], ChildSpec] | None = None
    """Called before restarting this child after a failure; returns the spec to start instead (e.g. the
    same role on another device)."""

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("ChildSpec id='': give each child a unique, non-empty id")
        if not 0 < self.shutdown_s < math.inf:
            raise ValueError(f"ChildSpec {self.id!r} shutdown_s={self.shutdown_s}: must be finite and > 0")
