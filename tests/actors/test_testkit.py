"""The virtual clock: timers fire in order at exact virtual times, without real sleeping; probes record."""

from __future__ import annotations

import asyncio

import pytest

from actors import ActorSystem, ChildDown
from actors.testkit import VirtualClockLoop, run_virtual, spawn_probe


def test_sleeps_and_timeouts_advance_virtual_time_exactly() -> None:
    async def main() -> list[tuple[str, float]]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualClockLoop)
        seen: list[tuple[str, float]] = []

        async def sleeper(name: str, delay: float) -> None:
            await asyncio.sleep(delay)
            seen.append((name, loop.time()))

        await asyncio.gather(sleeper("hour", 3600.0), sleeper("minute", 60.0), sleeper("day", 86400.0))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.sleep(10.0), 2.5)
        seen.append(("timeout", loop.time()))
        return seen

    seen = run_virtual(main())  # a virtual day: real sleeping would hang the suite
    assert seen == [("minute", 60.0), ("hour", 3600.0), ("day", 86400.0), ("timeout", 86402.5)]


def test_real_io_still_wakes_the_virtual_loop() -> None:
    async def main() -> bytes:
        reader, writer = await asyncio.open_connection(*server_address)
        writer.write(b"ping")
        data = await reader.readexactly(4)
        writer.close()
        return data

    async def serve() -> None:
        nonlocal server_address

        async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.write(await r.readexactly(4))
            await w.drain()
            w.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        server_address = server.sockets[0].getsockname()[:2]
        async with server:
            assert await main() == b"ping"

    server_address: tuple[str, int] = ("", 0)
    run_virtual(serve(), autojump_threshold=0.01)


def test_probe_records_messages() -> None:
    async def main() -> None:
        async with ActorSystem() as system:
            ref, probe = await spawn_probe(system)
            await ref.tell("hello")
            await ref.tell(42)
            assert await probe.expect(str) == "hello"
            with pytest.raises(AssertionError, match="expected a ChildDown, got 42"):
                await probe.expect(ChildDown)
            with pytest.raises(TimeoutError):
                await probe.expect(str, timeout_s=30.0)  # virtual: no real wait

    run_virtual(main())
