"""Nodes: actor systems in other OS processes or on other hosts, linked over authenticated TCP."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, final

from ._agent import AGENT_ID, LookupRequest, NodeAgent, ReleaseRetry, SpawnRequest, SpawnResult, StopRequest
from ._errors import ActorDead, ActorError, NodeError
from ._link import Kind, Link
from ._messages import ChildDown, Reason
from ._ref import ActorRef, UnroutableTarget
from ._transport import FrameProtocol

if TYPE_CHECKING:
    from ._system import ActorSystem, Factory

__all__ = ["TOKEN_ENV", "Network", "Node"]

log = logging.getLogger("actors")

TOKEN_ENV = "ACTORS_NODE_TOKEN"
"""Environment variable that hands the shared token to a child node (never on its command line)."""


@final
class Node:
    """A linked peer node: a child process started by `start_node`, or a host reached with `connect`."""

    def __init__(self, network: Network, node_id: str, process: asyncio.subprocess.Process | None) -> None:
        self.network = network
        self.node_id = node_id
        self.process = process
        self.link: Link | None = None

    def __repr__(self) -> str:
        pid = f" pid={self.pid}" if self.pid else ""
        return f"<Node {self.node_id}{pid}{'' if self.alive else ' down'}>"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def alive(self) -> bool:
        link_ok = self.link is not None and not self.link.closed
        return link_ok and (self.process is None or self.process.returncode is None)

    @property
    def agent(self) -> ActorRef:
        if self.link is None or self.link.closed:
            raise ActorDead(f"node {self.node_id} is down")
        return ActorRef(self.node_id, AGENT_ID, "actors.agent", self.link)

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Close the link (a child node exits on EOF) and reap the process, killing it after `timeout_s`."""
        if self.link is not None:
            self.link.close("node stopped")
        if self.process is not None and self.process.returncode is None:
            try:
                await asyncio.wait_for(self.process.wait(), timeout_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()

    def kill(self) -> None:
        """SIGKILL the node's process (chaos testing). Its watchers see `ChildDown(node_down)`."""
        if self.process is None:
            raise NodeError(f"node {self.node_id} is not a child process of this node; cannot kill it")
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()


class Network:
    """The links of one `ActorSystem` (reach it as ``system.network``). Star or mesh: any node may dial any."""

    handshake_timeout_s = 10.0
    heartbeat_s = 1.0
    """Each side pings this often."""
    heartbeat_timeout_s = 30.0
    """A link that receives no frame for this long is declared down (a host lost without a FIN). A child
    process that dies is seen at once through EOF; this only bounds silent losses and blocked peers, so it
    must exceed the longest loop-blocking step of a peer (imports, synchronous weight loads)."""
    remote_timeout_s = 120.0
    """Timeout of remote spawn requests (constructors may load models)."""
    start_timeout_s = 60.0

    def __init__(self, system: ActorSystem) -> None:
        self.system = system
        self.links: dict[str, Link] = {}
        self.nodes: dict[str, Node] = {}
        self.address: tuple[str, int] | None = None
        self._server: asyncio.AbstractServer | None = None
        self._watches: dict[tuple[str, int], list[Callable[[ChildDown], None]]] = {}
        self._arrivals: dict[str, asyncio.Future[None]] = {}
        self._agent: ActorRef | None = None
        # NOTE: concurrent first calls (two `start_node`s at once) must share one agent and one listener.
        self._agent_lock = asyncio.Lock()
        self._listen_lock = asyncio.Lock()
        self._serial = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()

    async def _ensure_agent(self) -> None:
        async with self._agent_lock:
            if self._agent is None:
                self._agent = await self.system.spawn_local(
                    NodeAgent, (self.system,), {}, name="actors.agent", actor_id=AGENT_ID
                )

    async def ensure_listening(self, host: str = "127.0.0.1") -> tuple[str, int]:
        """This node's listening ``(host, port)``, listening on `host` (any free port) if it does not yet."""
        async with self._listen_lock:
            if self._server is None:
                await self.listen(host, 0)
        assert self.address is not None
        return self.address

    # -- links -----------------------------------------------------------------------------------------
    async def listen(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Accept nodes that know this system's token. Returns the bound ``(host, port)``."""
        await self._ensure_agent()
        loop = self.system.loop

        def accept() -> FrameProtocol:
            proto = FrameProtocol(loop)
            Link(self, proto, dialer=False).start()
            return proto

        self._server = await loop.create_server(accept, host, port)
        bound = self._server.sockets[0].getsockname()
        self.address = (str(bound[0]), int(bound[1]))
        return self.address

    async def connect(self, host: str, port: int) -> Node:
        """Dial a listening node; both sides must share the token. Raises `NodeAuthError` / `NodeError`."""
        await self._ensure_agent()
        loop = self.system.loop
        try:
            _, proto = await loop.create_connection(lambda: FrameProtocol(loop), host, port)
        except OSError as exc:
            raise NodeError(f"cannot reach a node at {host}:{port}: {exc}") from exc
        link = Link(self, proto, dialer=True)
        link.start()
        await asyncio.shield(link.up)
        return self.nodes[link.peer_id]

    def admit(self, link: Link) -> str | None:
        """Register an authenticated link, or say why not."""
        peer = link.peer_id
        if peer == self.system.node_id:
            return f"peer claims our own node id {peer!r}; give each node a unique node_id"
        current = self.links.get(peer)
        if current is not None and not current.closed:
            return f"node id {peer!r} is already linked; give each node a unique node_id"
        self.links[peer] = link
        node = self.nodes.get(peer)
        if node is None:
            node = self.nodes[peer] = Node(self, peer, None)
        node.link = link
        arrival = self._arrivals.get(peer)
        if arrival is not None and not arrival.done():
            arrival.set_result(None)
        return None

    def link_down(self, link: Link, reason: str) -> None:
        peer = link.peer_id
        if self.links.get(peer) is link:
            del self.links[peer]
        arrival = self._arrivals.get(peer)
        if arrival is not None and not arrival.done():
            arrival.set_exception(NodeError(f"node {peer} failed to link: {reason}"))
        for key in [k for k in self._watches if k[0] == peer]:
            down = ChildDown(self.resolve_ref(peer, key[1], None), Reason.NODE_DOWN, reason)
            self._fire(self._watches.pop(key), down)

    def resolve_ref(self, node_id: str, actor_id: int, name: str | None) -> ActorRef:
        """Bind a ref that arrived over the wire to its route from this node."""
        if node_id == self.system.node_id:
            cell = self.system.local_cell(actor_id)
            if cell is not None:
                return cell.ref
            why = f"{node_id}/{actor_id} is not alive ({self.system.reason_of(actor_id)})"
            return ActorRef(node_id, actor_id, name, UnroutableTarget(why))
        link = self.links.get(node_id)
        if link is None:
            why = f"no link from {self.system.node_id} to node {node_id}; connect the two nodes"
            return ActorRef(node_id, actor_id, name, UnroutableTarget(why))
        return ActorRef(node_id, actor_id, name, link)

    # -- child processes -------------------------------------------------------------------------------
    async def start_node(self, *, label: str | None = None, env: dict[str, str] | None = None) -> Node:
        """Start a child OS process running an `ActorSystem` that links back here; returns once linked."""
        address = await self.ensure_listening()
        host = "127.0.0.1" if address[0] in ("0.0.0.0", "::") else address[0]
        tag = re.sub(r"[^A-Za-z0-9_-]", "_", label or "p")
        node_id = f"{self.system.node_id}.{tag}{next(self._serial)}"
        child_env = _child_env(self.system.token, env)
        arrival = self._arrivals[node_id] = self.system.loop.create_future()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "actors._node_main", "--connect", f"{host}:{address[1]}",
            "--node-id", node_id, env=child_env, stdin=asyncio.subprocess.DEVNULL,
        )
        node = self.nodes[node_id] = Node(self, node_id, process)
        self._spawn_task(self._reap(node))
        try:
            await asyncio.wait_for(asyncio.shield(arrival), self.start_timeout_s)
        except (TimeoutError, NodeError) as exc:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            raise NodeError(f"node process {node_id} (pid {process.pid}) did not link: {exc!r}") from exc
        finally:
            self._arrivals.pop(node_id, None)
        return node

    async def _reap(self, node: Node) -> None:
        assert node.process is not None
        code = await node.process.wait()
        why = f"node process {node.node_id} (pid {node.pid}) exited with code {code}"
        if node.link is not None:
            node.link.close(why, abort=True)
        arrival = self._arrivals.get(node.node_id)
        if arrival is not None and not arrival.done():
            arrival.set_exception(NodeError(why))

    def _spawn_task(self, coro: Any) -> None:
        task = self.system.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- remote actors ---------------------------------------------------------------------------------
    def _node(self, node: Node | str) -> Node:
        found = node if isinstance(node, Node) else self.nodes.get(node)
        if found is None or not found.alive:
            raise NodeError(f"node {node!r} is not linked; start_node() or connect() first")
        return found

    async def spawn_remote(self, node: Node | str, factory: Factory, args: Sequence[Any],
                           kwargs: dict[str, Any], *, retry_from: ActorRef | None = None, **opts: Any) -> ActorRef:
        target = self._node(node)
        retry = retry_from.actor_id if retry_from is not None and retry_from.node_id == target.node_id else None
        request = SpawnRequest(factory=_factory_path(factory), args=list(args), kwargs=kwargs, retry_from=retry, **opts)
        result: SpawnResult = await target.agent.ask(request, timeout=self.remote_timeout_s)
        if result.ref is None:
            raise NodeError(f"spawning {request.factory} on node {target.node_id} failed: {result.error}")
        return result.ref

    async def stop_remote(self, ref: ActorRef, timeout_s: float) -> ChildDown:
        node = self.nodes.get(ref.node_id)
        try:
            if node is None or not node.alive:
                raise ActorDead(f"node {ref.node_id} is down")
            down: ChildDown = await node.agent.ask(StopRequest(ref.actor_id, timeout_s), timeout=timeout_s + 5.0)
            return down
        except ActorDead as exc:
            return ChildDown(ref, Reason.NODE_DOWN, str(exc))

    def release_retry_remote(self, ref: ActorRef) -> None:
        node = self.nodes.get(ref.node_id)
        if node is not None and node.alive:
            node.agent.try_tell(ReleaseRetry(ref.actor_id))

    async def lookup(self, node: Node | str, name: str) -> ActorRef | None:
        """The actor registered under `name` on `node` (None if there is none)."""
        found: ActorRef | None = await self._node(node).agent.ask(LookupRequest(name))
        return found

    def watch_remote(self, ref: ActorRef, callback: Callable[[ChildDown], None]) -> None:
        link = ref._target if isinstance(ref._target, Link) else self.links.get(ref.node_id)
        if link is None or link.closed:
            why = link.close_reason if link is not None else "not linked"
            callback(ChildDown(ref, Reason.NODE_DOWN, f"node {ref.node_id}: {why}"))
            return
        key = (ref.node_id, ref.actor_id)
        callbacks = self._watches.setdefault(key, [])
        callbacks.append(callback)
        if len(callbacks) == 1:
            link.send(Kind.WATCH, ref.actor_id, 0, None)

    def remote_down(self, link: Link, actor_id: int, reason: str, detail: str, poisoned: bool) -> None:
        callbacks = self._watches.pop((link.peer_id, actor_id), [])
        down = ChildDown(self.resolve_ref(link.peer_id, actor_id, None), reason, detail, poisoned)
        self._fire(callbacks, down)

    @staticmethod
    def _fire(callbacks: list[Callable[[ChildDown], None]], down: ChildDown) -> None:
        for callback in callbacks:
            try:
                callback(down)
            except Exception:
                log.exception("a ChildDown callback for %r raised", down.ref)

    async def close(self) -> None:
        # NOTE: all at once: each child shuts its own actors down (within their stop timeouts) in parallel.
        await asyncio.gather(*(node.stop() for node in list(self.nodes.values())))
        for link in list(self.links.values()):
            link.close("system shut down")
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()


def _child_env(token: str, extra: dict[str, str] | None) -> dict[str, str]:
    """The parent's environment plus the token and this process's import path (like multiprocessing spawn)."""
    env = dict(os.environ, **(extra or {}))
    env[TOKEN_ENV] = token
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
    return env


def _factory_path(factory: Factory) -> str:
    if isinstance(factory, str):
        return factory
    path = f"{factory.__module__}:{factory.__qualname__}"
    if factory.__module__ == "__main__" or "<locals>" in factory.__qualname__:
        raise ActorError(f"{path} cannot be imported by another process; define it at module level of an "
                         "importable module or pass 'package.module:Name'")
    return path
