"""`ActorSystem`: spawns, stops and watches actors here and on other nodes."""

from __future__ import annotations

import asyncio
import importlib
import itertools
import logging
import secrets
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._actor import Actor
from ._cell import Cell
from ._errors import ActorError
from ._messages import ChildDown, Reason
from ._ref import ActorRef
from ._watchdog import Watchdog

if TYPE_CHECKING:
    from ._node import Network, Node

__all__ = ["ActorSystem", "Factory", "resolve_factory"]

log = logging.getLogger("actors")

Factory = type[Actor] | Callable[..., Actor] | str
"""An actor class or callable returning an Actor, or its import path ``"package.module:Name"``."""

DEFAULT_MAILBOX_CAPACITY = 1024
GRAVEYARD_SIZE = 10_000
"""Dead incarnations remembered so a late `watch` still gets the real reason (older ones get ``noproc``)."""


def resolve_factory(factory: Factory) -> Callable[..., Actor]:
    if not isinstance(factory, str):
        return factory
    module_name, sep, attr = factory.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"factory={factory!r}: use 'package.module:Name'")
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    return target  # type: ignore[no-any-return]


class ActorSystem:
    """The actors of one process (one *node*), plus links to other nodes.

    Use as ``async with ActorSystem() as system:``; `shutdown` stops every actor and child node.

    Args:
        node_id: this node's name on the wire (default: random). Must be unique among linked nodes.
        token: shared secret that authenticates nodes (default: random, handed to child processes).
        mailbox_capacity: default capacity of new mailboxes.
    """

    def __init__(
        self, *, node_id: str | None = None, token: str | None = None, mailbox_capacity: int = 1024
    ) -> None:
        self.node_id = node_id or f"node-{secrets.token_hex(4)}"
        self.token = token or secrets.token_hex(16)
        self.mailbox_capacity = mailbox_capacity
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ids = itertools.count(1)
        self._cells: dict[int, Cell] = {}
        self._names: dict[str, Cell] = {}
        self._graveyard: OrderedDict[int, Cell] = OrderedDict()
        self._watchers: dict[int, list[Callable[[ChildDown], None]]] = {}
        self._watchdogs: dict[int, Watchdog] = {}
        self._net: Network | None = None
        self._closing = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    @property
    def network(self) -> Network:
        if self._net is None:
            from ._node import Network

            self._net = Network(self)
        return self._net

    async def __aenter__(self) -> ActorSystem:
        _ = self.loop
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    # -- spawn -----------------------------------------------------------------------------------------
    async def spawn(
        self,
        factory: Factory,
        *args: Any,
        kwargs: Mapping[str, Any] | None = None,
        name: str | None = None,
        mailbox_capacity: int | None = None,
        watchdog_s: float | None = None,
        node: Node | str | None = None,
        supervised: bool = False,
        retry_from: ActorRef | None = None,
    ) -> ActorRef:
        """Start a fresh incarnation and return its ref once `on_start` has returned.

        Args:
            factory: Actor class / callable, or ``"module:Name"`` (required form for other nodes unless the
                callable is importable by its ``__module__`` and ``__qualname__``).
            args, kwargs: constructor arguments (msgspec-encodable when `node` is another node).
            name: optional unique name on its node (`lookup`).
            watchdog_s: declare the actor hung after this long holding work without progress.
            node: a `Node` (or node id) to start the actor on; None = this process.
            supervised: a supervisor will restart it; its crashed message is held for the next incarnation.
            retry_from: the previous incarnation; its crashed message is redelivered first (once).

        Raises:
            whatever the constructor or `on_start` raised; `ActorDead` / `NodeError` for remote failures.
        """
        if node is not None and (node if isinstance(node, str) else node.node_id) != self.node_id:
            return await self.network.spawn_remote(
                node, factory, args, dict(kwargs or {}), name=name, mailbox_capacity=mailbox_capacity,
                watchdog_s=watchdog_s, supervised=supervised, retry_from=retry_from,
            )
        return await self.spawn_local(
            resolve_factory(factory), args, dict(kwargs or {}), name=name,
            mailbox_capacity=mailbox_capacity, watchdog_s=watchdog_s, supervised=supervised,
            retry_from=retry_from.actor_id if retry_from is not None else None,
        )

    async def spawn_local(
        self,
        factory: Callable[..., Actor],
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        *,
        name: str | None = None,
        mailbox_capacity: int | None = None,
        watchdog_s: float | None = None,
        supervised: bool = False,
        retry_from: int | None = None,
        actor_id: int | None = None,
    ) -> ActorRef:
        if self._closing:
            raise ActorError(f"system {self.node_id} is shutting down; cannot spawn {factory!r}")
        if name is not None and name in self._names:
            raise ValueError(f"name={name!r} is taken by {self._names[name].ref}; pick another or stop it")
        capacity = mailbox_capacity or self.mailbox_capacity
        cell = Cell(self, next(self._ids) if actor_id is None else actor_id, name, capacity, supervised=supervised)
        cell.bind(factory(*args, **kwargs))
        self._cells[cell.ref.actor_id] = cell
        if name is not None:
            self._names[name] = cell
        if retry_from is not None and (old := self._graveyard.get(retry_from)) is not None:
            if (env := old.take_retry()) is not None:
                cell.mailbox.put_front(env)
        started: asyncio.Future[None] = self.loop.create_future()
        cell.task = self.loop.create_task(cell.main(started), name=f"actor {cell.ref!r}")
        if watchdog_s is not None:
            self._watchdogs[cell.ref.actor_id] = Watchdog(cell, watchdog_s)
        await started
        return cell.ref

    def lookup(self, name: str) -> ActorRef | None:
        """The live local actor registered under `name` (see `Network.lookup` for other nodes)."""
        cell = self._names.get(name)
        return cell.ref if cell is not None else None

    def local_cell(self, actor_id: int) -> Cell | None:
        return self._cells.get(actor_id)

    def release_retry(self, actor_id: int) -> None:
        """Fail the crashed message a dead incarnation holds (its supervisor decided not to restart it)."""
        old = self._graveyard.get(actor_id)
        if old is not None:
            old.release_retry()

    # -- nodes -----------------------------------------------------------------------------------------
    async def listen(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Accept nodes (other processes/hosts) that share this system's token; returns ``(host, port)``."""
        return await self.network.listen(host, port)

    async def connect(self, host: str, port: int) -> Node:
        """Link to a listening node (same token). Raises `NodeAuthError` on a token mismatch."""
        return await self.network.connect(host, port)

    async def start_node(self, *, label: str | None = None, env: dict[str, str] | None = None) -> Node:
        """Start a child OS process with its own actor system, linked to this one over loopback TCP."""
        return await self.network.start_node(label=label, env=env)

    async def spawn_process(
        self,
        factory: Factory,
        *args: Any,
        kwargs: Mapping[str, Any] | None = None,
        name: str | None = None,
        mailbox_capacity: int | None = None,
        watchdog_s: float | None = None,
        env: dict[str, str] | None = None,
    ) -> ActorRef:
        """Start `factory(*args, **kwargs)` in a new child process that lives exactly as long as the actor.

        `factory` must be importable there (``"module:Name"`` or a module-level class); args must be
        msgspec-encodable (ndarrays and tensors travel as raw buffers).
        """
        label = name or (factory if isinstance(factory, str) else factory.__name__).rpartition(":")[2]
        node = await self.start_node(label=label, env=env)
        try:
            ref = await self.spawn(
                factory, *args, kwargs=kwargs, name=name, mailbox_capacity=mailbox_capacity,
                watchdog_s=watchdog_s, node=node,
            )
        except BaseException:
            await node.stop()
            raise
        self.on_down(ref, lambda _down: self.network._spawn_task(node.stop()))
        return ref

    # -- stop ------------------------------------------------------------------------------------------
    async def stop(self, ref: ActorRef, timeout_s: float = 5.0) -> ChildDown:
        """Stop gracefully: the in-flight handler finishes, `on_stop` runs, queued asks fail `ActorDead`.

        After `timeout_s` seconds the incarnation is cancelled (reason ``killed``). Returns its `ChildDown`.
        """
        if ref.node_id != self.node_id:
            return await self.network.stop_remote(ref, timeout_s)
        cell = self._cells.get(ref.actor_id)
        if cell is None:
            return self._down_of(ref)
        cell.request_stop(normal=False)
        try:
            return await asyncio.wait_for(asyncio.shield(cell.terminated), timeout_s)
        except TimeoutError:
            cell.kill(Reason.KILLED, f"did not stop within {timeout_s:g}s")
            return await cell.terminated

    def kill(self, ref: ActorRef, reason: str = Reason.KILLED, detail: str = "") -> None:
        """Cancel a local incarnation at once (no `on_stop`)."""
        cell = self._cells.get(ref.actor_id) if ref.node_id == self.node_id else None
        if cell is None:
            raise ActorError(f"kill({ref}): not a live actor of this node; use stop() for remote actors")
        cell.kill(reason, detail)

    async def shutdown(self, timeout_s: float = 5.0) -> None:
        """Stop every local actor (each within `timeout_s`) and every linked node.

        Unsupervised actors stop newest first; supervised ones are stopped by their supervisors.
        """
        self._closing = True
        # Unsupervised actors first (newest first); supervisors stop their own children in their order.
        for supervised in (False, True):
            for cell in sorted(self._cells.values(), key=lambda c: -c.ref.actor_id):
                if cell.supervised is supervised and cell.ref.actor_id != 0:
                    await self.stop(cell.ref, timeout_s)
        if (agent := self._cells.get(0)) is not None:
            await self.stop(agent.ref, timeout_s)
        if self._net is not None:
            await self._net.close()

    # -- watch -----------------------------------------------------------------------------------------
    def watch(self, ref: ActorRef, watcher: ActorRef) -> None:
        """Deliver `ChildDown(ref, reason)` to `watcher` once `ref` ends (at once if it already has)."""
        self.on_down(ref, lambda down: _deliver(watcher, down))

    async def wait_down(self, ref: ActorRef) -> ChildDown:
        """Wait until `ref` ends and return its `ChildDown` (at once if it already has)."""
        fut: asyncio.Future[ChildDown] = self.loop.create_future()
        self.on_down(ref, lambda down: None if fut.done() else fut.set_result(down))
        return await fut

    def on_down(self, ref: ActorRef, callback: Callable[[ChildDown], None]) -> None:
        """Low-level watch: call `callback(ChildDown)` once when `ref` ends."""
        if ref.node_id != self.node_id:
            self.network.watch_remote(ref, callback)
        elif ref.actor_id in self._cells:
            self._watchers.setdefault(ref.actor_id, []).append(callback)
        else:
            callback(self._down_of(ref))

    def reason_of(self, actor_id: int) -> str:
        """Why a local actor id is not alive: its recorded down reason, ``alive`` or ``noproc``."""
        if actor_id in self._cells:
            return "alive"
        dead = self._graveyard.get(actor_id)
        if dead is not None and dead.down is not None:
            return f"{dead.down.reason}{': ' + dead.down.detail if dead.down.detail else ''}"
        return Reason.NOPROC

    def _down_of(self, ref: ActorRef) -> ChildDown:
        dead = self._graveyard.get(ref.actor_id)
        if dead is not None and dead.down is not None:
            return dead.down
        return ChildDown(ref, Reason.NOPROC, "no such actor (never existed or long gone)")

    def _cell_finished(self, cell: Cell) -> None:
        actor_id = cell.ref.actor_id
        self._cells.pop(actor_id, None)
        if cell.ref.name is not None and self._names.get(cell.ref.name) is cell:
            del self._names[cell.ref.name]
        if (dog := self._watchdogs.pop(actor_id, None)) is not None:
            dog.cancel()
        self._graveyard[actor_id] = cell
        while len(self._graveyard) > GRAVEYARD_SIZE:
            self._graveyard.popitem(last=False)
        assert cell.down is not None
        for callback in self._watchers.pop(actor_id, ()):
            try:
                callback(cell.down)
            except Exception:
                log.exception("a ChildDown callback for %r raised", cell.ref)


def _deliver(watcher: ActorRef, down: ChildDown) -> None:
    target = watcher._target
    if isinstance(target, Cell):
        target.mailbox.put_system(down)
        return
    try:
        watcher.try_tell(down)
    except ActorError as exc:
        log.warning("could not deliver %r to %r: %s", down, watcher, exc)
