"""actors: a pure-asyncio actor runtime (knows nothing about LLMs).

Actors with typed handlers and bounded mailboxes; `tell` / `ask` (finite timeout) that work the same in
this process, in child processes and on other hosts; OTP-style supervisors with a progress watchdog and
poison-message isolation; and a virtual-clock test kit (`actors.testkit`).
"""

from ._actor import Actor, handler, interleave
from ._errors import (
    ActorDead,
    ActorError,
    ActorHung,
    AskTimeout,
    CodecError,
    NodeAuthError,
    NodeError,
    Overloaded,
    PoisonMessage,
    SupervisorEscalation,
    UnknownMessage,
)
from ._loop import run, uvloop_available
from ._mailbox import MailboxStatistics
from ._messages import ChildDown, Reason
from ._node import Network, Node
from ._ref import DEFAULT_ASK_TIMEOUT_S, ActorRef
from ._registry import message, register_message
from ._spec import Backoff, ChildSpec, Restart, Strategy, SupervisorSpec
from ._supervisor import GetChild, Supervisor, WhichChildren
from ._system import ActorSystem, Factory

__all__ = [
    "DEFAULT_ASK_TIMEOUT_S",
    "Actor",
    "ActorDead",
    "ActorError",
    "ActorHung",
    "ActorRef",
    "ActorSystem",
    "AskTimeout",
    "Backoff",
    "ChildDown",
    "ChildSpec",
    "CodecError",
    "Factory",
    "GetChild",
    "MailboxStatistics",
    "Network",
    "Node",
    "NodeAuthError",
    "NodeError",
    "Overloaded",
    "PoisonMessage",
    "Reason",
    "Restart",
    "Strategy",
    "Supervisor",
    "SupervisorEscalation",
    "SupervisorSpec",
    "WhichChildren",
    "UnknownMessage",
    "handler",
    "interleave",
    "message",
    "register_message",
    "run",
    "uvloop_available",
]
