"""`ActorRef`: the location-transparent address of one actor incarnation."""

from __future__ import annotations

import math
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol, final

from ._errors import ActorDead, ActorError

if TYPE_CHECKING:
    from ._mailbox import MailboxStatistics

__all__ = ["DEFAULT_ASK_TIMEOUT_S", "ActorRef", "Target", "UnroutableTarget", "check_timeout"]

DEFAULT_ASK_TIMEOUT_S = 5.0
"""Erlang's `gen_server:call` default: finite, independent of the callee."""


def check_timeout(timeout: float) -> float:
    if not (isinstance(timeout, int | float) and 0 < timeout < math.inf):
        raise ValueError(f"timeout={timeout!r}: must be a finite number of seconds > 0; try 5.0")
    return float(timeout)


class Target(Protocol):
    """What a ref delivers to: a local cell, a link to another node, or nothing (unroutable)."""

    def tell(self, actor_id: int, msg: Any) -> Coroutine[Any, Any, None]: ...
    def try_tell(self, actor_id: int, msg: Any) -> None: ...
    def ask(self, actor_id: int, msg: Any, timeout_s: float) -> Coroutine[Any, Any, Any]: ...
    def statistics(self, actor_id: int) -> MailboxStatistics: ...


@final
class ActorRef:
    """Address of one incarnation: ``(node_id, actor_id)``. Get refs from `spawn`, never construct them.

    The same `tell` / `try_tell` / `ask` work whether the actor lives in this process, in a child process,
    or on another host. Refs compare and hash by ``(node_id, actor_id)``. A restarted actor is a new
    incarnation with a new ref.
    """

    __slots__ = ("node_id", "actor_id", "name", "_target")

    def __init__(self, node_id: str, actor_id: int, name: str | None, target: Target) -> None:
        self.node_id = node_id
        self.actor_id = actor_id
        self.name = name
        self._target = target

    def tell(self, msg: Any) -> Coroutine[Any, Any, None]:
        """Send without waiting for a reply; awaits only while the mailbox is full (backpressure).

        Raises `ActorDead` if the incarnation is gone.
        """
        return self._target.tell(self.actor_id, msg)

    def try_tell(self, msg: Any) -> None:
        """Send now or raise `Overloaded` (mailbox or link full) / `ActorDead`. For ingress paths."""
        self._target.try_tell(self.actor_id, msg)

    def ask(self, msg: Any, timeout: float = DEFAULT_ASK_TIMEOUT_S) -> Coroutine[Any, Any, Any]:
        """Send and await the handler's return value.

        Raises:
            AskTimeout: no reply within `timeout` seconds (loop clock). The caller is released at once,
                without waiting for the callee; a reply that arrives later is discarded.
            ActorDead: the incarnation died before replying (queued, in flight, or already dead).
            UnknownMessage: the actor has no handler for ``type(msg)``.
            PoisonMessage: the message crashed its handler twice.
        """
        return self._target.ask(self.actor_id, msg, check_timeout(timeout))

    def statistics(self) -> MailboxStatistics:
        """Mailbox statistics (used, capacity, waiting senders, peak); local refs only."""
        return self._target.statistics(self.actor_id)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ActorRef) and self.actor_id == other.actor_id and self.node_id == other.node_id
        )

    def __hash__(self) -> int:
        return hash((self.node_id, self.actor_id))

    def __repr__(self) -> str:
        label = f" {self.name}" if self.name else ""
        return f"<ActorRef {self.node_id}/{self.actor_id}{label}>"


@final
class UnroutableTarget:
    """A target for refs whose node this process cannot reach; every send fails with `ActorDead`."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def tell(self, actor_id: int, msg: Any) -> None:
        raise ActorDead(self.reason)

    def try_tell(self, actor_id: int, msg: Any) -> None:
        raise ActorDead(self.reason)

    async def ask(self, actor_id: int, msg: Any, timeout_s: float) -> Any:
        raise ActorDead(self.reason)

    def statistics(self, actor_id: int) -> MailboxStatistics:
        raise ActorError(f"no mailbox statistics: {self.reason}")
