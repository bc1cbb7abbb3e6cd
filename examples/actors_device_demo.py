"""A device-actor shaped demo: a supervised child process receives an ndarray and replies with a tensor.

    .venv/bin/python examples/actors_device_demo.py

The supervisor keeps one "device" per child process (placement="process"). We SIGKILL that process in the
middle of a request: the asker gets ActorDead at once, and the supervisor starts a fresh process.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

import actors
from actors import ActorDead, ActorSystem, ChildSpec, GetChild, Supervisor, SupervisorSpec
from tests.actors.workers import Pid, Scale, Sleep, TensorWorker


async def main() -> None:
    async with ActorSystem() as system:
        spec = [ChildSpec(id="device0", factory=TensorWorker, placement="process")]
        sup = await system.spawn(Supervisor, SupervisorSpec(intensity=3), spec)
        device = await sup.ask(GetChild("device0"))
        kv = np.random.default_rng(0).standard_normal((256, 4096)).astype(np.float32)  # 4 MiB
        out = await device.ask(Scale(kv, factor=0.5), timeout=30)
        print(f"device {device} (pid {await device.ask(Pid())}) replied {type(out).__name__} {tuple(out.shape)}")

        slow = asyncio.ensure_future(device.ask(Sleep(10.0), timeout=30))
        await asyncio.sleep(0.2)
        t0 = time.perf_counter()
        system.network.nodes[device.node_id].kill()
        try:
            await slow
        except ActorDead as exc:
            print(f"asker failed after {1e3 * (time.perf_counter() - t0):.0f} ms: {exc}")
        for _ in range(600):  # poll the supervisor (its queries interleave with the restart)
            fresh = await sup.ask(GetChild("device0"))
            if fresh not in (None, device):
                break
            await asyncio.sleep(0.1)
        print(f"restarted as {fresh} (pid {await fresh.ask(Pid())}) after {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    actors.run(main())
