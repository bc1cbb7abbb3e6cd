"""`Supervisor`: an actor that starts children from `ChildSpec`s and restarts them with OTP semantics."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec

from ._actor import Actor, handler, interleave
from ._errors import ActorError, SupervisorEscalation
from ._messages import ChildDown, Reason
from ._ref import ActorRef
from ._registry import register_message
from ._spec import ChildSpec, Restart, Strategy, SupervisorSpec

if TYPE_CHECKING:
    from ._node import Node

__all__ = ["GetChild", "Supervisor", "WhichChildren"]

log = logging.getLogger("actors")


class GetChild(msgspec.Struct, frozen=True):
    """Ask a supervisor for the live ref of child `id` (None while it is down or restarting)."""

    id: str


class WhichChildren(msgspec.Struct, frozen=True):
    """Ask a supervisor for ``{child id: live ref or None}`` in start order."""


class _RestartDue(msgspec.Struct, frozen=True):
    ids: tuple[str, ...]


register_message(GetChild, "actors:GetChild")
register_message(WhichChildren, "actors:WhichChildren")


class _Child:
    __slots__ = ("spec", "ref", "last_ref", "node", "started_at", "streak")

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.ref: ActorRef | None = None
        self.last_ref: ActorRef | None = None
        self.node: Node | None = None
        self.started_at = 0.0
        self.streak = 0


class Supervisor(Actor):
    """Starts `children` in order on start, stops them newest-first on stop, restarts them on failure.

    Failures are `ChildDown` messages from watching each child: crashes, watchdog hangs, kills and the death
    of a child's node all count. More than `spec.intensity` restarts within `spec.period_s` stop every child
    and crash this supervisor with `SupervisorEscalation`, which its own supervisor (or watcher) sees as a
    `ChildDown`. Spawn it like any actor: ``await system.spawn(Supervisor, spec, children)``.
    """

    def __init__(self, spec: SupervisorSpec, children: Sequence[ChildSpec]) -> None:
        ids = [c.id for c in children]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate child ids in {ids}; give each ChildSpec a unique id")
        self.spec = spec
        self.children = [_Child(c) for c in children]
        self._restarts: deque[float] = deque()

    async def on_start(self) -> None:
        for child in self.children:
            try:
                await self._start(child)
            except BaseException:
                await self._stop_all()
                raise

    async def on_stop(self) -> None:
        await self._stop_all()

    # NOTE: queries interleave, so they are answered while a (slow, e.g. new-process) restart is under way.
    @interleave
    @handler
    def which_children(self, msg: WhichChildren) -> dict[str, ActorRef | None]:
        return {c.spec.id: c.ref for c in self.children}

    @interleave
    @handler
    def get_child(self, msg: GetChild) -> ActorRef | None:
        child = self._find(msg.id)
        return child.ref if child is not None else None

    @handler
    async def child_down(self, msg: ChildDown) -> None:
        child = next((c for c in self.children if c.ref is not None and c.ref == msg.ref), None)
        if child is None:
            return  # a child we stopped on purpose, or a stale incarnation
        child.ref = None
        await self._on_failure(child, msg)

    @handler
    async def restart_due(self, msg: _RestartDue) -> None:
        for child_id in msg.ids:
            child = self._find(child_id)
            if child is None or child.ref is not None:
                continue
            try:
                await self._start(child)
            except Exception as exc:
                log.warning("%r: restarting %r failed: %s", self.ref, child_id, exc)
                down = ChildDown(child.last_ref or self.ref, Reason.CRASHED, f"restart failed: {exc!r}")
                await self._on_failure(child, down)
                return

    # -- policy ----------------------------------------------------------------------------------------
    async def _on_failure(self, child: _Child, down: ChildDown) -> None:
        spec = child.spec
        if spec.restart is Restart.TEMPORARY or (spec.restart is Restart.TRANSIENT and not down.abnormal):
            await self._remove(child)
            return
        if not down.poisoned:
            self._count_restart(child, down)
        if spec.replacement is not None:
            child.spec = spec.replacement(spec, down)
            if child.spec.placement != spec.placement:
                await self._drop_node(child)
        group = self._group(child)
        for sibling in reversed(group):
            if sibling is not child and sibling.ref is not None:
                await self._stop_child(sibling)
        for sibling in list(group):
            if sibling is not child and sibling.spec.restart is Restart.TEMPORARY:
                await self._remove(sibling)
        ids = tuple(c.spec.id for c in group if c in self.children)
        delay = self._delay(child)
        if delay > 0:
            self.schedule(delay, _RestartDue(ids))
        else:
            await self.restart_due(_RestartDue(ids))

    def _count_restart(self, child: _Child, down: ChildDown) -> None:
        now = self.system.loop.time()
        self._restarts.append(now)
        while self._restarts and self._restarts[0] <= now - self.spec.period_s:
            self._restarts.popleft()
        if len(self._restarts) > self.spec.intensity:
            raise SupervisorEscalation(
                f"{self.ref}: {len(self._restarts)} restarts within {self.spec.period_s:g}s exceed "
                f"intensity={self.spec.intensity}; last failure: child {child.spec.id!r} "
                f"{down.reason} {down.detail}".rstrip()
            )

    def _group(self, child: _Child) -> list[_Child]:
        strategy = self.spec.strategy
        if strategy is Strategy.ONE_FOR_ALL:
            return list(self.children)
        if strategy is Strategy.REST_FOR_ONE:
            return self.children[self.children.index(child) :]
        return [child]

    def _delay(self, child: _Child) -> float:
        backoff = child.spec.backoff
        if backoff is None:
            return 0.0
        if self.system.loop.time() - child.started_at >= backoff.reset_after_s:
            child.streak = 0
        delay = backoff.delay_s(child.streak)
        child.streak += 1
        return delay

    # -- child lifecycle -------------------------------------------------------------------------------
    def _find(self, child_id: str) -> _Child | None:
        return next((c for c in self.children if c.spec.id == child_id), None)

    async def _start(self, child: _Child) -> None:
        spec = child.spec
        node: Node | str | None = None
        if spec.placement == "process":
            if child.node is None or not child.node.alive:
                child.node = await self.system.network.start_node(label=spec.id)
            node = child.node
        elif spec.placement != "local":
            node = spec.placement
        ref = await self.system.spawn(
            spec.factory, *spec.args, kwargs=spec.kwargs, mailbox_capacity=spec.mailbox_capacity,
            watchdog_s=spec.watchdog_s, node=node, supervised=True, retry_from=child.last_ref,
        )
        child.ref = child.last_ref = ref
        child.started_at = self.system.loop.time()
        self.watch(ref)

    async def _stop_child(self, child: _Child) -> None:
        ref, child.ref = child.ref, None
        if ref is not None:
            try:
                await self.system.stop(ref, child.spec.shutdown_s)
            except ActorError as exc:  # its node may be gone already
                log.info("%r: stopping %r: %s", self.ref, child.spec.id, exc)

    async def _remove(self, child: _Child) -> None:
        if child.ref is not None:
            await self._stop_child(child)
        if child.last_ref is not None:
            self._release_retry(child.last_ref)
        await self._drop_node(child)
        if child in self.children:
            self.children.remove(child)

    def _release_retry(self, ref: ActorRef) -> None:
        if ref.node_id == self.system.node_id:
            self.system.release_retry(ref.actor_id)
        else:
            self.system.network.release_retry_remote(ref)

    async def _drop_node(self, child: _Child) -> None:
        node, child.node = child.node, None
        if node is not None:
            await node.stop()

    async def _stop_all(self) -> None:
        for child in reversed(self.children):
            await self._stop_child(child)
        for child in reversed(self.children):
            if child.last_ref is not None:
                self._release_retry(child.last_ref)
            await self._drop_node(child)
