"""System messages the runtime delivers to actors, and the down reasons it reports."""

from __future__ import annotations

import msgspec

from ._ref import ActorRef
from ._registry import register_message

__all__ = ["ChildDown", "Reason"]


class Reason:
    """Why an incarnation ended (the `ChildDown.reason` strings)."""

    NORMAL = "normal"
    """It stopped itself (`Actor.stop()`)."""
    STOPPED = "stopped"
    """Someone stopped it (`ActorSystem.stop`, supervisor shutdown, system shutdown)."""
    CRASHED = "crashed"
    """A handler, `on_start` or the actor's task raised; `detail` names the exception."""
    KILLED = "killed"
    """It did not stop within its shutdown timeout and was cancelled."""
    HUNG = "hung"
    """The progress watchdog declared it hung."""
    NODE_DOWN = "node_down"
    """The process or host it lived on died or became unreachable."""
    NOPROC = "noproc"
    """Nothing is known about it (watched an id that never existed or was forgotten)."""

    NORMAL_EXITS = frozenset({NORMAL, STOPPED})


class ChildDown(msgspec.Struct, frozen=True):
    """Delivered to every watcher of `ref` once, when the incarnation behind `ref` has ended.

    Delivered even when the watch starts after the death (Akka `Terminated` semantics).
    """

    ref: ActorRef
    reason: str
    detail: str = ""
    poisoned: bool = False
    """The failure was pinned on a poison message (already failed back); supervisors do not count it."""

    @property
    def abnormal(self) -> bool:
        """True unless the actor stopped normally (transient children are restarted only if abnormal)."""
        return self.reason not in Reason.NORMAL_EXITS


register_message(ChildDown, "actors:ChildDown")
