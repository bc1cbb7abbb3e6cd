"""actors micro-benchmarks, each against a raw baseline measured in the same run (same loop, same machine).

    .venv/bin/python benchmarks/actors_bench.py [--quick]

1. in-process tell msg/s      vs a bare bounded asyncio.Queue producer/consumer   (target >= 0.7x)
2. in-process ask RTT (us)    vs a bare queue + future round trip                  (target <= 1.5x)
3. cross-process tell msg/s over loopback (frame batching)                         (target >= 100k msg/s)
   cross-process ask RTT (us), reported
4. 10 MB tensor send to a child process, GB/s vs raw blocking-socket sendall       (target >= 0.8x)
5. node death (SIGKILL) -> ChildDown latency, reported (spec: within 1 s)

Timings are the best of `--repeats` runs (default 3) to damp noise from other processes on the host.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import msgspec
import torch

import actors
from actors import Actor, ActorSystem, handler, message

CAPACITY = 1024
TENSOR_BYTES = 10 * 1024 * 1024


@message(tag="bench:Tick")
class Tick(msgspec.Struct, array_like=True):
    n: int


@message(tag="bench:Blob")
class Blob(msgspec.Struct):
    data: torch.Tensor


class Sink(Actor):
    """Counts ticks; answers an int with the count; answers a Blob with its byte size."""

    def __init__(self) -> None:
        self.count = 0

    @handler
    def tick(self, msg: Tick) -> None:
        self.count += 1

    @handler
    def sync(self, msg: int) -> int:
        return self.count

    @handler
    def blob(self, msg: Blob) -> int:
        return msg.data.numel() * msg.data.element_size()


SINK = "actors_bench:Sink"  # importable in child nodes: this file's folder is on their PYTHONPATH


async def best_pair(
    repeats: int, ours: Callable[[], Awaitable[float]], base: Callable[[], Awaitable[float]]
) -> tuple[float, float]:
    """Best time of each, running them alternately so both see the same background load."""
    ours_t, base_t = [], []
    for _ in range(repeats):
        base_t.append(await base())
        ours_t.append(await ours())
    return min(ours_t), min(base_t)


async def best(repeats: int, run: Callable[[], Awaitable[float]]) -> float:
    return min([await run() for _ in range(repeats)])


# -- 1. tell ------------------------------------------------------------------------------------------
async def bare_queue_tell(n: int) -> float:
    queue: asyncio.Queue[int | None] = asyncio.Queue(CAPACITY)
    count = 0

    async def consumer() -> None:
        nonlocal count
        while await queue.get() is not None:
            count += 1

    task = asyncio.ensure_future(consumer())
    t0 = time.perf_counter()
    for i in range(n):
        await queue.put(i)
    await queue.put(None)
    await task
    assert count == n
    return time.perf_counter() - t0


async def actor_tell(system: ActorSystem, n: int) -> float:
    ref = await system.spawn(Sink, mailbox_capacity=CAPACITY)
    msg = Tick(1)
    t0 = time.perf_counter()
    for _ in range(n):
        await ref.tell(msg)
    assert await ref.ask(0) == n
    elapsed = time.perf_counter() - t0
    await system.stop(ref)
    return elapsed


# -- 2. ask -------------------------------------------------------------------------------------------
async def bare_queue_ask(n: int) -> float:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, asyncio.Future[int]] | None] = asyncio.Queue(CAPACITY)

    async def server() -> None:
        while (item := await queue.get()) is not None:
            item[1].set_result(item[0])

    task = asyncio.ensure_future(server())
    t0 = time.perf_counter()
    for i in range(n):
        fut = loop.create_future()
        queue.put_nowait((i, fut))
        await fut
    elapsed = time.perf_counter() - t0
    await queue.put(None)
    await task
    return elapsed


async def actor_ask(system: ActorSystem, n: int) -> float:
    ref = await system.spawn(Sink, mailbox_capacity=CAPACITY)
    t0 = time.perf_counter()
    for i in range(n):
        await ref.ask(i)
    elapsed = time.perf_counter() - t0
    await system.stop(ref)
    return elapsed


# -- 3. cross-process ---------------------------------------------------------------------------------
async def remote_tell(ref: actors.ActorRef, n: int) -> float:
    base = await ref.ask(0, timeout=60)
    msg = Tick(1)
    t0 = time.perf_counter()
    for _ in range(n):
        await ref.tell(msg)
    assert await ref.ask(0, timeout=60) == base + n
    return time.perf_counter() - t0


async def remote_ask(ref: actors.ActorRef, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        await ref.ask(i)
    return time.perf_counter() - t0


# -- 4. tensors ---------------------------------------------------------------------------------------
async def remote_tensor(ref: actors.ActorRef, tensor: torch.Tensor, rounds: int) -> float:
    blob = Blob(tensor)
    t0 = time.perf_counter()
    for _ in range(rounds):
        assert await ref.ask(blob, timeout=60) == TENSOR_BYTES
    return time.perf_counter() - t0


RAW_RECEIVER = """
import socket, sys
srv = socket.create_server(("127.0.0.1", 0))
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
size = int(sys.argv[1])
buf = bytearray(size)
view = memoryview(buf)
while True:
    got = 0
    while got < size:
        n = conn.recv_into(view[got:])
        if n == 0:
            sys.exit(0)
        got += n
    conn.sendall(b"k")
"""


class RawSocketPeer:
    """The peer: blocking sendall of the same bytes to a child process that recv_into's them and acks."""

    def __init__(self, nbytes: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", RAW_RECEIVER, str(nbytes)], stdout=subprocess.PIPE
        )
        assert self.proc.stdout is not None
        port = int(self.proc.stdout.readline())
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def send(self, payload: memoryview, rounds: int) -> float:
        t0 = time.perf_counter()
        for _ in range(rounds):  # NOTE: blocks the loop on purpose: this is the raw, loop-free baseline
            self.sock.sendall(payload)
            assert self.sock.recv(1) == b"k"
        return time.perf_counter() - t0

    def close(self) -> None:
        self.sock.close()
        self.proc.wait(timeout=10)


# -- 5. node death ------------------------------------------------------------------------------------
async def death_latency(system: ActorSystem) -> float:
    ref = await system.spawn_process(SINK)
    await ref.ask(0, timeout=60)
    down = asyncio.ensure_future(system.wait_down(ref))
    await asyncio.sleep(0.05)
    t0 = time.perf_counter()
    system.network.nodes[ref.node_id].kill()
    await asyncio.wait_for(down, 10)
    return time.perf_counter() - t0


def row(name: str, ours: str, base: str, ratio: str, target: str, ok: bool | None) -> str:
    verdict = "" if ok is None else ("met" if ok else "MISSED")
    return f"| {name} | {ours} | {base} | {ratio} | {target} | {verdict} |"


async def main(quick: bool, repeats: int) -> None:
    n_tell = 50_000 if quick else 200_000
    n_ask = 20_000 if quick else 100_000
    n_remote_tell = 50_000 if quick else 200_000
    n_remote_ask = 2_000 if quick else 10_000
    rounds = 5 if quick else 20
    loop_name = type(asyncio.get_running_loop()).__module__.split(".")[0]
    lines = [
        f"actors benchmark: loop={loop_name}, python {sys.version.split()[0]}, {os.cpu_count()} cpus, "
        f"best of {repeats}",
        "",
        "| measurement | actors | raw baseline (same run) | ratio | target | |",
        "|---|---|---|---|---|---|",
    ]
    async with ActorSystem() as system:
        ours_t, base_t = await best_pair(
            repeats, lambda: actor_tell(system, n_tell), lambda: bare_queue_tell(n_tell)
        )
        ratio = base_t / ours_t
        lines.append(
            row(
                "in-process tell",
                f"{n_tell / ours_t / 1e6:.2f} M msg/s",
                f"{n_tell / base_t / 1e6:.2f} M msg/s (asyncio.Queue({CAPACITY}))",
                f"{ratio:.2f}x",
                ">= 0.7x",
                ratio >= 0.7,
            )
        )
        ours_a, base_a = await best_pair(
            repeats, lambda: actor_ask(system, n_ask), lambda: bare_queue_ask(n_ask)
        )
        ratio = ours_a / base_a
        lines.append(
            row(
                "in-process ask RTT",
                f"{ours_a / n_ask * 1e6:.2f} us",
                f"{base_a / n_ask * 1e6:.2f} us (queue + future)",
                f"{ratio:.2f}x",
                "<= 1.5x",
                ratio <= 1.5,
            )
        )

        ref = await system.spawn_process(SINK)
        remote_t = await best(repeats, lambda: remote_tell(ref, n_remote_tell))
        rate = n_remote_tell / remote_t
        lines.append(
            row("cross-process tell", f"{rate / 1e3:.0f} k msg/s", "-", "-", ">= 100k msg/s", rate >= 100e3)
        )
        remote_a = await best(repeats, lambda: remote_ask(ref, n_remote_ask))
        lines.append(
            row("cross-process ask RTT", f"{remote_a / n_remote_ask * 1e6:.1f} us", "-", "-", "report", None)
        )

        tensor = torch.randn(TENSOR_BYTES // 4)
        payload = memoryview(tensor.numpy()).cast("B")
        peer = RawSocketPeer(payload.nbytes)
        try:
            ours_x, base_x = await best_pair(
                repeats, lambda: remote_tensor(ref, tensor, rounds), lambda: peer.send(payload, rounds)
            )
        finally:
            peer.close()
        gbps = rounds * TENSOR_BYTES / ours_x / 1e9
        base_gbps = rounds * TENSOR_BYTES / base_x / 1e9
        ratio = base_x / ours_x
        lines.append(
            row(
                "10 MB tensor send",
                f"{gbps:.2f} GB/s",
                f"{base_gbps:.2f} GB/s (blocking sendall/recv_into)",
                f"{ratio:.2f}x",
                ">= 0.8x",
                ratio >= 0.8,
            )
        )
        await system.stop(ref)

        death = await death_latency(system)
        lines.append(row("SIGKILL -> ChildDown", f"{death * 1e3:.1f} ms", "-", "-", "<= 1 s", death <= 1.0))
    print("\n".join(lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller counts (smoke run)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    actors.run(main(args.quick, args.repeats))
