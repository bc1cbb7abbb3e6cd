"""The actor runtime's error hierarchy: every failure a caller can see is an `ActorError`."""

from __future__ import annotations

__all__ = [
    "ActorDead",
    "ActorError",
    "ActorHung",
    "AskTimeout",
    "CodecError",
    "NodeAuthError",
    "NodeError",
    "Overloaded",
    "PoisonMessage",
    "SupervisorEscalation",
    "UnknownMessage",
]


class ActorError(Exception):
    """Base class of every error raised by `actors`."""


class ActorDead(ActorError):
    """The target incarnation is dead (stopped, crashed, killed, or its node is gone).

    Raised to askers whose request was queued, in flight or sent after the death. A supervisor may have
    started a new incarnation under a new ref; ask the supervisor for it (`Supervisor.child`).
    """


class AskTimeout(ActorError, TimeoutError):
    """No reply arrived within the ask's timeout. The caller is failed at once; a late reply is dropped."""


class Overloaded(ActorError):
    """The mailbox is full and the sender chose not to wait (`try_tell`, ingress). Maps to HTTP 503."""

    http_status = 503


class UnknownMessage(ActorError, TypeError):
    """The actor has no handler for the message's type. The actor keeps running."""


class PoisonMessage(ActorError):
    """The message crashed its handler twice (two incarnations); it is failed back instead of retried."""


class ActorHung(ActorError):
    """The progress watchdog saw no progress for `watchdog_s` while the actor held work."""


class SupervisorEscalation(ActorError):
    """A supervisor exceeded its restart intensity: its subtree was stopped and the failure escalates."""


class NodeError(ActorError):
    """A node (another OS process or host) could not be started, reached or kept."""


class NodeAuthError(NodeError):
    """The peer did not prove knowledge of the shared node token."""


class CodecError(ActorError):
    """A message could not be encoded for, or decoded from, the wire."""


# Errors that may cross the wire: the receiving side rebuilds them by name (never by unpickling).
WIRE_ERRORS: dict[str, type[ActorError]] = {
    cls.__name__: cls
    for cls in (
        ActorError,
        ActorDead,
        AskTimeout,
        Overloaded,
        UnknownMessage,
        PoisonMessage,
        ActorHung,
        SupervisorEscalation,
        NodeError,
        NodeAuthError,
        CodecError,
    )
}


def error_from_wire(name: str, text: str) -> ActorError:
    """Rebuild an error sent by a peer; unknown names become a plain `ActorError` naming the remote type."""
    cls = WIRE_ERRORS.get(name)
    if cls is None:
        return ActorError(f"remote {name}: {text}")
    return cls(text)
