"""tell never waits for a reply; ask has a finite default timeout, fails fast and drops late replies."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from actors import DEFAULT_ASK_TIMEOUT_S, Actor, ActorSystem, AskTimeout, handler
from actors.testkit import run_virtual


class Hold(msgspec.Struct):
    seconds: float


class Count(msgspec.Struct):
    pass


class Sleeper(Actor):
    def __init__(self) -> None:
        self.finished: list[float] = []

    @handler
    async def hold(self, msg: Hold) -> str:
        await asyncio.sleep(msg.seconds)
        self.finished.append(msg.seconds)
        return f"held {msg.seconds}"

    @handler
    def count(self, msg: Count) -> list[float]:
        return list(self.finished)


def test_tell_returns_before_the_handler_runs() -> None:
    async def main() -> None:
        async with ActorSystem() as system:
            ref = await system.spawn(Sleeper)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            await ref.tell(Hold(100.0))
            assert loop.time() == t0  # no virtual time passed: tell did not wait for the handler
            assert await ref.ask(Count(), timeout=200) == [100.0]

    run_virtual(main())


def test_ask_default_timeout_is_five_seconds_and_does_not_wait_for_the_callee() -> None:
    async def main() -> None:
        async with ActorSystem() as system:
            ref = await system.spawn(Sleeper)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            with pytest.raises(AskTimeout, match="within 5s"):
                await ref.ask(Hold(60.0))
            assert loop.time() - t0 == pytest.approx(DEFAULT_ASK_TIMEOUT_S)  # not 60 s
            assert DEFAULT_ASK_TIMEOUT_S == 5.0

    run_virtual(main())


def test_late_reply_is_discarded_and_later_asks_get_their_own_reply() -> None:
    async def main() -> None:
        async with ActorSystem() as system:
            ref = await system.spawn(Sleeper)
            with pytest.raises(AskTimeout):
                await ref.ask(Hold(2.0), timeout=1.0)
            # The first handler finishes at t=2 and its reply is dropped; this ask must get its own answer.
            assert await ref.ask(Hold(0.5), timeout=10.0) == "held 0.5"
            assert await ref.ask(Count()) == [2.0, 0.5]

    run_virtual(main())


def test_stale_asks_are_skipped_when_their_asker_already_gave_up() -> None:
    async def main() -> None:
        async with ActorSystem() as system:
            ref = await system.spawn(Sleeper)
            blocker = asyncio.ensure_future(ref.ask(Hold(3.0), timeout=10))
            await asyncio.sleep(0)  # the blocker's ask is queued first
            with pytest.raises(AskTimeout):
                await ref.ask(Hold(1.0), timeout=1.0)  # queued behind the blocker, expires in the queue
            assert await blocker == "held 3.0"
            assert await ref.ask(Count()) == [3.0]  # the expired request never ran

    run_virtual(main())


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan"), None])
def test_ask_rejects_non_finite_timeouts(bad: object) -> None:
    async def main() -> None:
        async with ActorSystem() as system:
            ref = await system.spawn(Sleeper)
            with pytest.raises(ValueError, match="finite number of seconds"):
                await ref.ask(Count(), timeout=bad)  # type: ignore[arg-type]

    run_virtual(main())


def test_refs_compare_by_node_and_actor_id() -> None:
    async def main() -> None:
        async with ActorSystem(node_id="n1") as system:
            a = await system.spawn(Sleeper, name="a")
            b = await system.spawn(Sleeper)
            assert a == system.lookup("a") and hash(a) == hash(system.lookup("a"))
            assert a != b and len({a, b, system.lookup("a")}) == 2
            assert repr(a) == "<ActorRef n1/1 a>"

    run_virtual(main())
