"""`NodeAgent`: actor 0 of every networked node; it spawns, stops and looks up actors for its peers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from ._actor import Actor, handler, interleave
from ._cell import describe
from ._messages import ChildDown
from ._ref import ActorRef, UnroutableTarget
from ._registry import register_message
from ._system import resolve_factory

if TYPE_CHECKING:
    from ._system import ActorSystem

__all__ = ["AGENT_ID", "LookupRequest", "NodeAgent", "ReleaseRetry", "SpawnRequest", "SpawnResult", "StopRequest"]

AGENT_ID = 0


class SpawnRequest(msgspec.Struct, frozen=True):
    factory: str
    args: list[Any]
    kwargs: dict[str, Any]
    name: str | None = None
    mailbox_capacity: int | None = None
    watchdog_s: float | None = None
    supervised: bool = False
    retry_from: int | None = None


class SpawnResult(msgspec.Struct, frozen=True):
    ref: ActorRef | None
    error: str = ""


class StopRequest(msgspec.Struct, frozen=True):
    actor_id: int
    timeout_s: float


class ReleaseRetry(msgspec.Struct, frozen=True):
    actor_id: int


class LookupRequest(msgspec.Struct, frozen=True):
    name: str


for _cls in (SpawnRequest, SpawnResult, StopRequest, ReleaseRetry, LookupRequest):
    register_message(_cls, f"actors:{_cls.__name__}")


class NodeAgent(Actor):
    """Serves remote spawn / stop / lookup requests. Spawns and stops interleave: a slow constructor (a model
    load) does not hold up the next request."""

    def __init__(self, system: ActorSystem) -> None:
        self._system = system

    @interleave
    @handler
    async def spawn(self, msg: SpawnRequest) -> SpawnResult:
        try:
            ref = await self._system.spawn_local(
                resolve_factory(msg.factory), msg.args, msg.kwargs, name=msg.name,
                mailbox_capacity=msg.mailbox_capacity, watchdog_s=msg.watchdog_s, supervised=msg.supervised,
                retry_from=msg.retry_from,
            )
        except Exception as exc:
            return SpawnResult(ref=None, error=describe(exc))
        return SpawnResult(ref=ref)

    @interleave
    @handler
    async def stop_actor(self, msg: StopRequest) -> ChildDown:
        local = ActorRef(self._system.node_id, msg.actor_id, None, UnroutableTarget("stop"))
        return await self._system.stop(local, msg.timeout_s)

    @handler
    def release(self, msg: ReleaseRetry) -> None:
        self._system.release_retry(msg.actor_id)

    @handler
    def lookup(self, msg: LookupRequest) -> ActorRef | None:
        return self._system.lookup(msg.name)
