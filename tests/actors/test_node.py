"""Nodes in real child processes over loopback TCP: location-transparent refs, tensors, auth, SIGKILL."""

from __future__ import annotations

import asyncio
import os

import numpy as np
import pytest

from actors import (
    ActorDead,
    ActorSystem,
    ChildSpec,
    GetChild,
    NodeAuthError,
    NodeError,
    PoisonMessage,
    Reason,
    Strategy,
    Supervisor,
    SupervisorSpec,
    UnknownMessage,
)
from tests.actors.workers import Add, AtExitWriter, Counter, Crash, Pid, Scale, Sleep, TensorWorker


async def test_cross_process_tell_and_ask_use_the_same_api() -> None:
    async with ActorSystem() as system:
        ref = await system.spawn_process(Counter, 5)
        assert await ref.ask(Pid()) != os.getpid()
        for _ in range(100):
            await ref.tell(Add(1))
        assert await ref.ask(Add(0)) == 105  # tells arrive in order before the ask
        assert await ref.ask("plain msgpack value") == "plain msgpack value"
        with pytest.raises(UnknownMessage, match="no handler for float"):
            await ref.ask(1.5)
        with pytest.raises(NodeError, match="ZeroDivisionError|TypeError"):
            await system.spawn_process("tests.actors.workers:Counter", "not-an-int", kwargs={"bad": 1})


async def test_child_actor_receives_a_large_ndarray_and_replies_with_a_tensor() -> None:
    import torch

    async with ActorSystem() as system:
        ref = await system.spawn_process(TensorWorker)
        data = np.random.default_rng(0).standard_normal((512, 1024))  # 4 MiB of float64
        out = await ref.ask(Scale(data, factor=3.0), timeout=30)
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and tuple(out.shape) == (512, 1024)
        torch.testing.assert_close(out, torch.from_numpy(data.astype(np.float32)) * 3.0)


async def test_wrong_token_is_rejected() -> None:
    async with ActorSystem(token="right") as server, ActorSystem(token="wrong") as intruder:
        host, port = await server.listen()
        with pytest.raises(NodeAuthError, match="authentication"):
            await intruder.connect(host, port)
        await asyncio.sleep(0.05)
        assert server.network.links == {}


async def test_hosts_attach_with_the_shared_token_and_refs_are_location_transparent() -> None:
    async with ActorSystem(node_id="head", token="t") as head, ActorSystem(node_id="worker", token="t") as worker:
        host, port = await head.listen()
        local = await worker.spawn(Counter, 1, name="counter")
        node = await worker.connect(host, port)
        assert node.node_id == "head" and "worker" in head.network.nodes
        remote = await head.network.lookup("worker", "counter")
        assert remote is not None and remote == local
        assert await remote.ask(Add(2)) == 3
        spawned = await head.spawn(Counter, 10, node="worker")  # head starts an actor on the worker host
        assert spawned.node_id == "worker" and await spawned.ask(Add(1)) == 11
        down = await head.stop(spawned)
        assert down.reason == Reason.STOPPED
        late = await head.wait_down(spawned)  # watch after death, across nodes
        assert late.reason == Reason.STOPPED


async def test_sigkill_mid_ask_fails_the_asker_with_actor_dead_and_watchers_see_node_down() -> None:
    async with ActorSystem() as system:
        ref = await system.spawn_process(Counter)
        pid = await ref.ask(Pid())
        node = system.network.nodes[ref.node_id]
        asking = asyncio.ensure_future(ref.ask(Sleep(20.0), timeout=30.0))
        watching = asyncio.ensure_future(system.wait_down(ref))
        await asyncio.sleep(0.2)
        assert node.pid == pid
        node.kill()
        with pytest.raises(ActorDead, match="unreachable"):  # not AskTimeout: failed at the node's death
            await asking
        down = await asyncio.wait_for(watching, 5.0)
        assert down.reason == Reason.NODE_DOWN and down.ref == ref
        with pytest.raises(ActorDead):
            await ref.tell(Add(1))


async def test_supervisor_restarts_process_children_per_strategy_after_sigkill() -> None:
    spec = SupervisorSpec(strategy=Strategy.ONE_FOR_ALL, intensity=3)
    children = [
        ChildSpec(id="a", factory=Counter, placement="process"),
        ChildSpec(id="b", factory=Counter, placement="process"),
    ]
    async with ActorSystem() as system:
        sup = await system.spawn(Supervisor, spec, children)
        a1, b1 = await sup.ask(GetChild("a")), await sup.ask(GetChild("b"))
        pid_a, pid_b = await a1.ask(Pid()), await b1.ask(Pid())
        asking = asyncio.ensure_future(a1.ask(Sleep(20.0), timeout=30.0))
        await asyncio.sleep(0.2)
        system.network.nodes[a1.node_id].kill()
        with pytest.raises(ActorDead):
            await asking
        a2 = b2 = None
        for _ in range(200):  # wait for the supervisor to restart both (a needs a new process)
            a2, b2 = await sup.ask(GetChild("a")), await sup.ask(GetChild("b"))
            if a2 is not None and b2 is not None and a2 != a1 and b2 != b1:
                break
            await asyncio.sleep(0.1)
        assert a2 is not None and b2 is not None and a2 != a1 and b2 != b1  # one_for_all: both restarted
        assert await a2.ask(Pid()) != pid_a  # a's process died: a fresh process
        assert await b2.ask(Pid()) == pid_b  # b's process lived: a fresh actor in it
        assert await a2.ask(Add(2)) == 2 and await b2.ask(Add(3)) == 3  # fresh constructors
        await system.stop(sup)
        nodes = list(system.network.nodes.values())
        assert all(n.process is not None and n.process.returncode is not None for n in nodes)  # no orphans


async def test_remote_poison_message_is_failed_back_after_a_restart_on_the_same_node() -> None:
    children = [ChildSpec(id="p", factory=Counter, placement="process")]
    async with ActorSystem() as system:
        sup = await system.spawn(Supervisor, SupervisorSpec(), children)
        first = await sup.ask(GetChild("p"))
        with pytest.raises(PoisonMessage, match="Crash crashed Counter twice"):
            await first.ask(Crash("bad input"), timeout=30)
        answer = None
        for _ in range(100):  # the poisoned incarnation may still be listed until its ChildDown lands
            fresh = await sup.ask(GetChild("p"))
            try:
                answer = await fresh.ask(Add(1)) if fresh is not None and fresh != first else None
            except ActorDead:
                answer = None
            if answer is not None:
                break
            await asyncio.sleep(0.05)
        assert answer == 1  # a fresh incarnation (constructor state) serves after the poison was isolated


async def test_child_nodes_exit_when_the_parent_system_shuts_down() -> None:
    system = ActorSystem()
    ref = await system.spawn_process(Counter)
    node = system.network.nodes[ref.node_id]
    await system.shutdown()
    assert node.process is not None and node.process.returncode is not None
    assert not node.alive


async def test_nodes_started_concurrently_share_one_agent_and_listener() -> None:
    async with ActorSystem(node_id="par") as system:
        nodes = await asyncio.gather(*(system.start_node(label=f"n{i}") for i in range(3)))
        assert len({n.node_id for n in nodes}) == 3 and all(n.alive for n in nodes)
        address = system.network.address
        assert await system.network.ensure_listening() == address  # no second listener
        refs = await asyncio.gather(*(system.spawn(Counter, i, node=n) for i, n in enumerate(nodes)))
        assert [await r.ask(Add(10)) for r in refs] == [10, 11, 12]
        assert len({await r.ask(Pid()) for r in refs}) == 3


async def test_a_child_node_runs_its_atexit_hooks_and_exits_cleanly_on_shutdown(tmp_path) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "marker"
    system = ActorSystem()
    ref = await system.spawn_process(AtExitWriter, str(marker))
    node = system.network.nodes[ref.node_id]
    await system.shutdown()
    assert node.process is not None and node.process.returncode == 0  # exited by itself, not killed
    assert marker.read_text() == "atexit ran"


def test_a_silent_peer_is_declared_down_after_the_heartbeat_timeout() -> None:
    from actors.testkit import run_virtual

    async def main() -> None:
        async with ActorSystem(node_id="a", token="t") as a, ActorSystem(node_id="b", token="t") as b:
            host, port = await a.listen()
            await b.connect(host, port)
            remote = await a.spawn(Counter, node="b")
            down = asyncio.ensure_future(a.wait_down(remote))
            loop = asyncio.get_running_loop()
            await asyncio.sleep(45.0)  # pings keep the link up well past the 30 s timeout
            assert not down.done() and await remote.ask(Add(1)) == 1
            b.network.links["a"]._beat.cancel()  # type: ignore[union-attr]  # b goes silent
            silent_at = loop.time()
            result = await down
            assert result.reason == Reason.NODE_DOWN and "heartbeat timeout" in result.detail
            assert 30.0 <= loop.time() - silent_at <= 61.0  # detected within two check periods

    run_virtual(main(), autojump_threshold=0.005)
