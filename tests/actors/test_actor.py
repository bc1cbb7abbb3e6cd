"""Typed handler dispatch, unknown types, serial execution and opt-in interleaving."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from actors import Actor, ActorSystem, UnknownMessage, handler, interleave
from actors.testkit import run_virtual


class Ping(msgspec.Struct):
    n: int


class Pong(msgspec.Struct):
    n: int


class SubPing(Ping):
    pass


class Dispatcher(Actor):
    @handler
    def ping(self, msg: Ping) -> str:
        return f"ping {msg.n}"

    @handler
    async def pong(self, msg: Pong | int) -> str:
        await asyncio.sleep(0)
        return f"pong {msg}"

    @handler(str, bytes)
    def text(self, msg: str | bytes) -> str:
        return f"text {msg!r}"


def test_dispatch_by_annotation_union_explicit_types_and_subclasses() -> None:
    async def main() -> None:
        async with ActorSystem() as system:
            ref = await system.spawn(Dispatcher)
            assert await ref.ask(Ping(1)) == "ping 1"
            assert await ref.ask(Pong(2)) == "pong Pong(n=2)"
            assert await ref.ask(7) == "pong 7"
            assert await ref.ask("a") == "text 'a'"
            assert await ref.ask(b"b") == "text b'b'"
            assert await ref.ask(SubPing(3)) == "ping 3"  # falls back along the MRO

    run_virtual(main())


def test_unknown_type_fails_the_asker_and_the_actor_keeps_running() -> None:
    async def main() -> None:
        async with ActorSystem() as system:
            ref = await system.spawn(Dispatcher)
            with pytest.raises(UnknownMessage, match="no handler for float"):
                await ref.ask(1.5)
            await ref.tell(2.5)  # a tell of an unknown type is dropped, not a crash
            assert await ref.ask(Ping(4)) == "ping 4"
            assert system.local_cell(ref.actor_id) is not None

    run_virtual(main())


def test_handler_declaration_errors_name_the_fix() -> None:
    with pytest.raises(TypeError, match="two handlers for Ping"):

        class Twice(Actor):
            @handler
            def a(self, msg: Ping) -> None: ...

            @handler(Ping)
            def b(self, msg: Ping) -> None: ...

    with pytest.raises(TypeError, match="annotate the message parameter"):

        class Bare(Actor):
            @handler
            def a(self, msg) -> None: ...  # type: ignore[no-untyped-def]


class Serial(Actor):
    def __init__(self) -> None:
        self.running = 0
        self.overlap = 0
        self.order: list[int] = []

    @handler
    async def work(self, msg: Ping) -> None:
        self.running += 1
        self.overlap = max(self.overlap, self.running)
        await asyncio.sleep(0.01 * (5 - msg.n))  # later messages are quicker: overlap would reorder them
        self.order.append(msg.n)
        self.running -= 1

    @handler
    def report(self, msg: Pong) -> tuple[int, list[int]]:
        return self.overlap, self.order


def test_handlers_run_one_at_a_time_in_arrival_order() -> None:
    async def main() -> None:
        async with ActorSystem() as system:
            ref = await system.spawn(Serial)
            for n in range(5):
                await ref.tell(Ping(n))
            overlap, order = await ref.ask(Pong(0))
            assert overlap == 1
            assert order == [0, 1, 2, 3, 4]

    run_virtual(main())


class Mixed(Actor):
    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.seen: list[str] = []

    @handler
    async def slow(self, msg: Ping) -> str:
        self.seen.append("slow-start")
        await self.gate.wait()
        self.seen.append("slow-end")
        return "slow"

    @interleave
    @handler
    def status(self, msg: Pong) -> list[str]:
        return list(self.seen)

    @handler(str)
    @interleave
    async def open_gate(self, msg: str) -> str:
        self.gate.set()
        return "opened"


def test_interleaved_handlers_run_while_a_serial_handler_is_suspended() -> None:
    async def main() -> None:
        async with ActorSystem() as system:
            ref = await system.spawn(Mixed)
            slow = asyncio.ensure_future(ref.ask(Ping(0)))
            await asyncio.sleep(0.1)
            assert await ref.ask(Pong(0)) == ["slow-start"]  # ran while `slow` was suspended
            assert await ref.ask("open") == "opened"  # and unblocked it
            assert await slow == "slow"

    run_virtual(main())


def test_serial_handlers_wait_behind_a_suspended_one_even_with_interleaving() -> None:
    async def main() -> None:
        async with ActorSystem() as system:
            ref = await system.spawn(Mixed)
            first = asyncio.ensure_future(ref.ask(Ping(0)))
            second = asyncio.ensure_future(ref.ask(Ping(1)))
            await asyncio.sleep(0.1)
            assert not first.done() and not second.done()
            assert await ref.ask(Pong(0)) == ["slow-start"]  # the second serial one has not started
            await ref.ask("open")
            assert await first == "slow" and await second == "slow"

    run_virtual(main())


def test_self_stop_is_a_normal_exit() -> None:
    class Quitter(Actor):
        @handler
        def quit(self, msg: Ping) -> None:
            self.stop()

    async def main() -> None:
        async with ActorSystem() as system:
            ref = await system.spawn(Quitter)
            await ref.tell(Ping(0))
            down = await system.wait_down(ref)
            assert down.reason == "normal" and not down.abnormal

    run_virtual(main())
