"""Supervisors on the virtual clock: strategies, restart types, intensity, backoff, replacement, watchdog, poison."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import msgspec
import pytest

from actors import (
    Actor,
    ActorDead,
    ActorSystem,
    Backoff,
    ChildDown,
    ChildSpec,
    GetChild,
    PoisonMessage,
    Reason,
    Restart,
    Strategy,
    Supervisor,
    SupervisorSpec,
    WhichChildren,
    handler,
)
from actors.testkit import run_virtual

EVENTS: list[tuple[str, str, float]] = []


class Crash(msgspec.Struct):
    pass


class Quit(msgspec.Struct):
    pass


class Hang(msgspec.Struct):
    pass


class Flaky(msgspec.Struct):
    """Crashes the first incarnation that sees it, succeeds on the next."""

    key: str


class Hello(msgspec.Struct):
    pass


CRASHED_ONCE: set[str] = set()


class Member(Actor):
    def __init__(self, name: str) -> None:
        self.name = name

    async def on_start(self) -> None:
        EVENTS.append(("start", self.name, asyncio.get_running_loop().time()))

    async def on_stop(self) -> None:
        EVENTS.append(("stop", self.name, asyncio.get_running_loop().time()))

    @handler
    def crash(self, msg: Crash) -> None:
        raise RuntimeError(f"{self.name} crashed")

    @handler
    def quit(self, msg: Quit) -> None:
        self.stop()

    @handler
    async def hang(self, msg: Hang) -> None:
        await asyncio.sleep(3600)

    @handler
    def flaky(self, msg: Flaky) -> str:
        if msg.key not in CRASHED_ONCE:
            CRASHED_ONCE.add(msg.key)
            raise RuntimeError("first try fails")
        return f"{self.name} ok"

    @handler
    def hello(self, msg: Hello) -> str:
        return self.name


@pytest.fixture(autouse=True)
def _clean() -> None:
    EVENTS.clear()
    CRASHED_ONCE.clear()


def child(name: str, **kw: object) -> ChildSpec:
    return ChildSpec(id=name, factory=Member, args=(name,), **kw)  # type: ignore[arg-type]


async def children_of(sup: object) -> dict[str, object]:
    return await sup.ask(WhichChildren())  # type: ignore[attr-defined, no-any-return]


async def settle() -> None:
    await asyncio.sleep(0.01)


def starts() -> list[str]:
    return [name for kind, name, _ in EVENTS if kind == "start"]


@pytest.mark.parametrize(
    ("strategy", "restarted"),
    [(Strategy.ONE_FOR_ONE, {"b"}), (Strategy.ONE_FOR_ALL, {"a", "b", "c"}), (Strategy.REST_FOR_ONE, {"b", "c"})],
)
def test_strategies_restart_the_right_children(strategy: Strategy, restarted: set[str]) -> None:
    async def main() -> None:
        async with ActorSystem() as system:
            sup = await system.spawn(Supervisor, SupervisorSpec(strategy=strategy), [child(n) for n in "abc"])
            before = await children_of(sup)
            EVENTS.clear()
            await before["b"].tell(Flaky("strategy"))  # type: ignore[attr-defined]
            await settle()
            after = await children_of(sup)
            changed = {n for n in "abc" if after[n] != before[n]}
            assert changed == restarted
            assert all(ref is not None for ref in after.values())
            # siblings stop newest first, then the group restarts in start order
            stopped = [name for kind, name, _ in EVENTS if kind == "stop" and name != "b"]
            assert stopped == sorted(restarted - {"b"}, reverse=True)
            assert starts() == sorted(restarted)
            assert await after["b"].ask(Hello()) == "b"  # type: ignore[attr-defined]

    run_virtual(main())


@pytest.mark.parametrize(
    ("restart", "after_normal", "after_crash"),
    [(Restart.PERMANENT, True, True), (Restart.TRANSIENT, False, True), (Restart.TEMPORARY, False, False)],
)
def test_restart_types(restart: Restart, after_normal: bool, after_crash: bool) -> None:
    async def run(trigger: msgspec.Struct) -> bool:
        spec = SupervisorSpec(intensity=5)
        async with ActorSystem() as system:
            sup = await system.spawn(Supervisor, spec, [child("x", restart=restart), child("y")])
            first = await sup.ask(GetChild("x"))
            await first.tell(trigger)
            await settle()
            kids = await children_of(sup)
            restarted = kids.get("x") is not None and kids["x"] != first
            if not restarted:
                assert "x" not in kids  # OTP: a child that is not restarted is removed
            assert kids["y"] is not None
            return restarted

    assert run_virtual(run(Quit())) is after_normal
    assert run_virtual(run(Crash())) is after_crash


def test_restart_is_a_fresh_constructor_with_a_new_ref() -> None:
    class Stateful(Actor):
        def __init__(self) -> None:
            self.n = 0

        @handler
        def bump(self, msg: int) -> int:
            self.n += msg
            return self.n

        @handler
        def crash(self, msg: Crash) -> None:
            raise RuntimeError("x")

    async def main() -> None:
        async with ActorSystem() as system:
            sup = await system.spawn(Supervisor, SupervisorSpec(), [ChildSpec(id="s", factory=Stateful)])
            old = await sup.ask(GetChild("s"))
            assert await old.ask(5) == 5
            await old.tell(Crash())
            await settle()
            new = await sup.ask(GetChild("s"))
            assert new != old
            assert await new.ask(1) == 1  # state was not carried over
            with pytest.raises(ActorDead):
                await old.ask(1)

    run_virtual(main())


def test_exceeding_intensity_stops_the_subtree_and_escalates() -> None:
    async def main() -> None:
        async with ActorSystem() as system:
            sup = await system.spawn(Supervisor, SupervisorSpec(), [child("a"), child("b")])  # 1 restart / 5 s
            (await sup.ask(GetChild("a"))).try_tell(Flaky("one"))
            await asyncio.sleep(4.0)
            (await sup.ask(GetChild("a"))).try_tell(Flaky("two"))  # second restart within 5 s: too many
            down = await system.wait_down(sup)
            assert down.reason == Reason.CRASHED and "SupervisorEscalation" in down.detail
            assert "intensity=1" in down.detail
            assert sorted(n for kind, n, _ in EVENTS if kind == "stop") == ["a", "a", "b"]

    run_virtual(main())


def test_restarts_spread_beyond_the_period_do_not_escalate() -> None:
    async def main() -> None:
        async with ActorSystem() as system:
            sup = await system.spawn(Supervisor, SupervisorSpec(), [child("a")])
            for i in range(4):
                (await sup.ask(GetChild("a"))).try_tell(Flaky(f"spread{i}"))
                await asyncio.sleep(5.5)
            assert (await sup.ask(GetChild("a"))) is not None
            assert starts() == ["a"] * 5

    run_virtual(main())


def test_escalation_reaches_the_parent_supervisor_which_restarts_the_subtree() -> None:
    async def main() -> None:
        async with ActorSystem() as system:
            inner = ChildSpec(
                id="inner", factory=Supervisor, args=(SupervisorSpec(intensity=0), [child("leaf")])
            )
            top = await system.spawn(Supervisor, SupervisorSpec(intensity=3), [inner])
            inner_ref = await top.ask(GetChild("inner"))
            leaf = await inner_ref.ask(GetChild("leaf"))
            watch_inner = asyncio.ensure_future(system.wait_down(inner_ref))
            await leaf.tell(Crash())  # intensity=0: the first failure escalates
            down = await watch_inner
            assert "SupervisorEscalation" in down.detail
            await settle()
            new_inner = await top.ask(GetChild("inner"))
            assert new_inner is not None and new_inner != inner_ref
            new_leaf = await new_inner.ask(GetChild("leaf"))
            assert await new_leaf.ask(Hello()) == "leaf"
            assert starts() == ["leaf", "leaf"]

    run_virtual(main())


def test_backoff_delays_restarts_exponentially_on_the_loop_clock() -> None:
    async def main() -> None:
        async with ActorSystem() as system:
            backoff = Backoff(initial_s=1.0, factor=2.0, max_s=3.0, reset_after_s=100.0)
            sup = await system.spawn(
                Supervisor, SupervisorSpec(intensity=10, period_s=60), [child("a", backoff=backoff)]
            )
            for i in range(3):
                ref = await sup.ask(GetChild("a"))
                while ref is None:
                    await asyncio.sleep(0.05)
                    ref = await sup.ask(GetChild("a"))
                crash_at = asyncio.get_running_loop().time()
                EVENTS.append(("crash", "a", crash_at))
                await ref.tell(Flaky(f"backoff{i}"))
                await asyncio.sleep(0.01)
                assert (await sup.ask(GetChild("a"))) is None  # down during the backoff
                await asyncio.sleep(5.0)
            times = [t for kind, _, t in EVENTS if kind in ("crash", "start")][1:]  # skip the first start
            gaps = [round(times[i + 1] - times[i], 3) for i in range(0, len(times) - 1, 2)]
            assert gaps == [1.0, 2.0, 3.0]  # initial, x2, capped at max_s

    run_virtual(main())


def test_replacement_restarts_the_child_from_a_new_spec() -> None:
    def elsewhere(spec: ChildSpec, down: ChildDown) -> ChildSpec:
        assert down.reason == Reason.CRASHED
        return replace(spec, args=(f"{spec.args[0]}+moved",))

    async def main() -> None:
        async with ActorSystem() as system:
            sup = await system.spawn(Supervisor, SupervisorSpec(), [child("gpu0", replacement=elsewhere)])
            await (await sup.ask(GetChild("gpu0"))).tell(Flaky("move"))
            await settle()
            assert await (await sup.ask(GetChild("gpu0"))).ask(Hello()) == "gpu0+moved"

    run_virtual(main())


def test_watchdog_declares_a_hung_child_and_a_twice_hanging_request_becomes_poison() -> None:
    async def main() -> None:
        async with ActorSystem() as system:
            sup = await system.spawn(Supervisor, SupervisorSpec(intensity=5), [child("w", watchdog_s=2.0)])
            first = await sup.ask(GetChild("w"))
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            down_first = asyncio.ensure_future(system.wait_down(first))
            with pytest.raises(PoisonMessage, match="Hang crashed Member twice"):
                await first.ask(Hang(), timeout=60.0)
            elapsed = loop.time() - t0
            down = await down_first
            assert down.reason == Reason.HUNG and "watchdog_s=2" in down.detail
            assert 4.0 <= elapsed <= 5.0  # two incarnations, each hung for 2.0-2.5 s
            await settle()
            fresh = await sup.ask(GetChild("w"))
            assert await fresh.ask(Hello()) == "w"  # the actor keeps serving after the poison was isolated
            assert starts() == ["w", "w", "w"]

    run_virtual(main())


def test_idle_child_with_a_watchdog_is_never_declared_hung() -> None:
    async def main() -> None:
        async with ActorSystem() as system:
            sup = await system.spawn(Supervisor, SupervisorSpec(), [child("w", watchdog_s=1.0)])
            ref = await sup.ask(GetChild("w"))
            await asyncio.sleep(30.0)
            assert await sup.ask(GetChild("w")) == ref

    run_virtual(main())


def test_poison_message_is_failed_back_and_does_not_count_toward_intensity() -> None:
    async def main() -> None:
        async with ActorSystem() as system:
            sup = await system.spawn(Supervisor, SupervisorSpec(), [child("p")])  # intensity 1 / 5 s
            ref = await sup.ask(GetChild("p"))
            with pytest.raises(PoisonMessage, match="Crash crashed Member twice"):
                await ref.ask(Crash())
            await settle()
            fresh = await sup.ask(GetChild("p"))
            assert await fresh.ask(Hello()) == "p"  # supervisor did not escalate
            assert starts() == ["p", "p", "p"]

    run_virtual(main())


def test_a_message_that_crashes_once_is_retried_on_the_next_incarnation() -> None:
    async def main() -> None:
        async with ActorSystem() as system:
            sup = await system.spawn(Supervisor, SupervisorSpec(), [child("r")])
            ref = await sup.ask(GetChild("r"))
            assert await ref.ask(Flaky("k")) == "r ok"  # answered by the restarted incarnation
            assert starts() == ["r", "r"]

    run_virtual(main())


def test_unsupervised_crash_fails_the_message_at_once() -> None:
    async def main() -> None:
        async with ActorSystem() as system:
            ref = await system.spawn(Member, "solo")
            with pytest.raises(ActorDead, match="first try fails"):
                await ref.ask(Flaky("z"))

    run_virtual(main())


def test_stopping_the_supervisor_stops_children_newest_first() -> None:
    async def main() -> None:
        async with ActorSystem() as system:
            sup = await system.spawn(Supervisor, SupervisorSpec(), [child(n) for n in "abc"])
            await system.stop(sup)
            assert [n for kind, n, _ in EVENTS if kind == "stop"] == ["c", "b", "a"]

    run_virtual(main())


def test_spec_validation_names_the_fix() -> None:
    with pytest.raises(ValueError, match="intensity=-1"):
        SupervisorSpec(intensity=-1)
    with pytest.raises(ValueError, match="period_s=0"):
        SupervisorSpec(period_s=0)
    with pytest.raises(ValueError, match="unique, non-empty id"):
        ChildSpec(id="", factory=Member)
    with pytest.raises(ValueError, match="factor=0.5"):
        Backoff(factor=0.5)
    with pytest.raises(ValueError, match="duplicate child ids"):
        Supervisor(SupervisorSpec(), [child("a"), child("a")])
