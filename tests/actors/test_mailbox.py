"""Bounded mailboxes: awaiting senders feel backpressure, try_tell raises Overloaded, statistics report."""

from __future__ import annotations

import asyncio

import pytest

from actors import Actor, ActorDead, ActorSystem, MailboxStatistics, Overloaded, handler
from actors._mailbox import Mailbox
from actors.testkit import run_virtual


class Gate(Actor):
    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.got: list[int] = []

    @handler
    async def take(self, msg: int) -> None:
        await self.open.wait()
        self.got.append(msg)

    @handler(str)
    def release(self, msg: str) -> list[int]:
        return self.got


def test_tell_waits_for_space_and_try_tell_raises_overloaded() -> None:
    async def main() -> None:
        async with ActorSystem() as system:
            ref = await system.spawn(Gate, mailbox_capacity=2)
            cell = system.local_cell(ref.actor_id)
            assert cell is not None
            await ref.tell(0)  # taken by the handler, which blocks on the gate
            await asyncio.sleep(0)
            await ref.tell(1)
            await ref.tell(2)  # mailbox now full (2/2)
            with pytest.raises(Overloaded, match="mailbox full"):
                ref.try_tell(3)
            assert Overloaded.http_status == 503
            blocked = asyncio.ensure_future(ref.tell(3))
            await asyncio.sleep(1.0)
            assert not blocked.done()
            assert ref.statistics() == MailboxStatistics(used=2, capacity=2, waiting_senders=1, peak=2)
            cell.actor.open.set()  # type: ignore[attr-defined]
            await blocked
            got = await ref.ask("done")
            assert got == [0, 1, 2, 3]
            stats = ref.statistics()
            assert (stats.used, stats.waiting_senders, stats.peak) == (0, 0, 2)

    run_virtual(main())


def test_waiting_senders_fail_with_actor_dead_when_the_actor_stops() -> None:
    async def main() -> None:
        async with ActorSystem() as system:
            ref = await system.spawn(Gate, mailbox_capacity=1)
            await ref.tell(0)
            await asyncio.sleep(0)
            await ref.tell(1)
            blocked = asyncio.ensure_future(ref.tell(2))
            await asyncio.sleep(0)
            await system.stop(ref, timeout_s=1.0)
            with pytest.raises(ActorDead):
                await blocked
            with pytest.raises(ActorDead):
                await ref.tell(3)
            with pytest.raises(ActorDead):
                ref.try_tell(3)

    run_virtual(main())


def test_mailbox_rejects_zero_capacity_and_cancelled_putters_pass_their_slot_on() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        with pytest.raises(ValueError, match="capacity=0"):
            Mailbox(0, loop)
        mb = Mailbox(1, loop)
        mb.put_nowait("a")
        first = asyncio.ensure_future(mb.put("b"))
        second = asyncio.ensure_future(mb.put("c"))
        await asyncio.sleep(0)
        assert mb.statistics().waiting_senders == 2
        mb.popleft()  # wakes `first`...
        first.cancel()  # ...which is cancelled before it runs: `second` must get the slot
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert second.done() and list(mb._items) == ["c"]

    run_virtual(main())
