"""ActorSystem: spawn with hooks, graceful stop with timeout, watch (even after death), ActorDead for queued asks."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from actors import Actor, ActorDead, ActorSystem, ChildDown, Reason, handler
from actors.testkit import run_virtual, spawn_probe


class Work(msgspec.Struct):
    seconds: float


class Boom(msgspec.Struct):
    pass


class Worker(Actor):
    log: list[str] = []

    def __init__(self, tag: str = "w") -> None:
        self.tag = tag

    async def on_start(self) -> None:
        Worker.log.append(f"start {self.tag}")

    async def on_stop(self) -> None:
        Worker.log.append(f"stop {self.tag}")

    @handler
    async def work(self, msg: Work) -> str:
        await asyncio.sleep(msg.seconds)
        return f"{self.tag} worked {msg.seconds}"

    @handler
    def boom(self, msg: Boom) -> None:
        raise RuntimeError("boom")


@pytest.fixture(autouse=True)
def _clear_log() -> None:
    Worker.log.clear()


def test_spawn_runs_on_start_before_returning_and_stop_runs_on_stop() -> None:
    async def main() -> None:
        async with ActorSystem() as system:
            ref = await system.spawn(Worker, "a", name="alpha")
            assert Worker.log == ["start a"]
            assert system.lookup("alpha") == ref
            down = await system.stop(ref)
            assert (down.ref, down.reason) == (ref, Reason.STOPPED)
            assert Worker.log == ["start a", "stop a"]
            assert system.lookup("alpha") is None

    run_virtual(main())


def test_spawn_raises_what_the_constructor_or_on_start_raised() -> None:
    class BadStart(Actor):
        async def on_start(self) -> None:
            raise LookupError("no weights")

    async def main() -> None:
        async with ActorSystem() as system:
            with pytest.raises(LookupError, match="no weights"):
                await system.spawn(BadStart)
            with pytest.raises(TypeError):
                await system.spawn(Worker, "a", "extra-arg")
            with pytest.raises(TypeError, match="not an Actor"):
                await system.spawn(lambda: object())  # type: ignore[arg-type, return-value]

    run_virtual(main())


def test_spawn_by_import_path() -> None:
    async def main() -> None:
        async with ActorSystem() as system:
            ref = await system.spawn("tests.actors.workers:Counter", 10)
            from tests.actors.workers import Add

            assert await ref.ask(Add(5)) == 15
            with pytest.raises(ValueError, match="package.module:Name"):
                await system.spawn("no_colon_here")

    run_virtual(main())


def test_graceful_stop_finishes_the_in_flight_handler_and_fails_queued_asks() -> None:
    async def main() -> None:
        async with ActorSystem() as system:
            ref = await system.spawn(Worker, "g")
            in_flight = asyncio.ensure_future(ref.ask(Work(2.0)))
            queued = asyncio.ensure_future(ref.ask(Work(1.0)))
            await asyncio.sleep(0.5)
            down = await system.stop(ref, timeout_s=5.0)
            assert down.reason == Reason.STOPPED
            assert await in_flight == "g worked 2.0"
            with pytest.raises(ActorDead, match="stopped"):
                await queued
            with pytest.raises(ActorDead):
                await ref.ask(Work(0.0))  # asks after death fail at once, not after a timeout

    run_virtual(main())


def test_stop_kills_after_its_timeout_without_on_stop() -> None:
    async def main() -> None:
        async with ActorSystem() as system:
            ref = await system.spawn(Worker, "k")
            in_flight = asyncio.ensure_future(ref.ask(Work(100.0), timeout=200))
            await asyncio.sleep(0.1)  # the handler is running
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            down = await system.stop(ref, timeout_s=3.0)
            assert loop.time() - t0 == pytest.approx(3.0)
            assert down.reason == Reason.KILLED and down.abnormal
            assert Worker.log == ["start k"]
            with pytest.raises(ActorDead, match="killed"):
                await in_flight

    run_virtual(main())


def test_crash_fails_the_asker_and_queued_asks_with_actor_dead() -> None:
    async def main() -> None:
        async with ActorSystem() as system:
            ref = await system.spawn(Worker, "c")
            blocker = asyncio.ensure_future(ref.ask(Work(1.0)))
            await asyncio.sleep(0)
            crash = asyncio.ensure_future(ref.ask(Boom()))
            queued = asyncio.ensure_future(ref.ask(Work(0.0)))
            assert await blocker == "c worked 1.0"
            with pytest.raises(ActorDead, match="crashed"):
                await crash
            with pytest.raises(ActorDead, match="RuntimeError: boom"):
                await queued
            down = await system.wait_down(ref)
            assert down.reason == Reason.CRASHED and "boom" in down.detail
            assert Worker.log == ["start c", "stop c"]  # on_stop runs after a crash

    run_virtual(main())


def test_watch_delivers_child_down_also_when_started_after_the_death() -> None:
    async def main() -> None:
        async with ActorSystem() as system:
            probe_ref, probe = await spawn_probe(system)
            ref = await system.spawn(Worker, "w")
            system.watch(ref, probe_ref)
            await ref.tell(Boom())
            early = await probe.expect(ChildDown)
            assert early.ref == ref and early.reason == Reason.CRASHED
            system.watch(ref, probe_ref)  # the actor is long dead: still delivered, with the real reason
            late = await probe.expect(ChildDown)
            assert late == early
            assert (await system.wait_down(ref)) == early
            assert probe.inbox.empty()

    run_virtual(main())


def test_watching_an_unknown_id_reports_noproc() -> None:
    async def main() -> None:
        async with ActorSystem() as system:
            ref = await system.spawn(Worker)
            await system.stop(ref)
            ghost = type(ref)(system.node_id, 999, None, ref._target)
            down = await system.wait_down(ghost)
            assert down.reason == Reason.NOPROC and down.abnormal

    run_virtual(main())


def test_actor_watch_and_kill() -> None:
    class Watcher(Actor):
        def __init__(self) -> None:
            self.downs: list[ChildDown] = []

        @handler
        def down(self, msg: ChildDown) -> None:
            self.downs.append(msg)

        @handler(str)
        def report(self, msg: str) -> list[str]:
            return [d.reason for d in self.downs]

    async def main() -> None:
        async with ActorSystem() as system:
            target = await system.spawn(Worker)
            watcher = await system.spawn(Watcher)
            cell = system.local_cell(watcher.actor_id)
            assert cell is not None
            cell.actor.watch(target)
            system.kill(target)
            await system.wait_down(target)
            assert await watcher.ask("?") == [Reason.KILLED]

    run_virtual(main())


def test_shutdown_stops_everything_newest_first() -> None:
    async def main() -> None:
        system = ActorSystem()
        for tag in "abc":
            await system.spawn(Worker, tag)
        await system.shutdown()
        assert Worker.log == ["start a", "start b", "start c", "stop c", "stop b", "stop a"]
        with pytest.raises(Exception, match="shutting down"):
            await system.spawn(Worker)

    run_virtual(main())
