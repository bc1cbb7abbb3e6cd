"""`DeviceActor`: one device (a GPU, or a CPU worker with its own torch threads), one engine, one role.

Its step loop is a task: take the queued admissions/handoffs/aborts, run them plus one `engine.step()` in a
worker thread (`DeviceCore`), then send ONE `StepReport` to the sink and the step's KV handoffs straight to
the decode devices. Handlers only queue work, so messages are received promptly while a step runs.

Invariant: a role is a label the router acts on; `SetRole` flips it without touching the engine (no weight
reload), and requests already inside the engine finish the way they were admitted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import msgspec

from actors import Actor, ActorError, ActorRef, handler, interleave
from thunder.runtime.messages import (
    ROLES,
    Abort,
    Admit,
    DeviceInfo,
    DeviceStats,
    Drain,
    EngineSpec,
    GetInfo,
    GetStats,
    KVHandoff,
    Peers,
    Profile,
    ProfileResult,
    RelayHandoff,
    SetRole,
)

if TYPE_CHECKING:
    from thunder.runtime.cpu_policy import CpuShare
    from thunder.runtime.device_core import DeviceCore, StepOutcome

__all__ = ["DeviceActor"]

log = logging.getLogger(__name__)


class _LoopCrashed(Exception):
    pass


class DeviceActor(Actor):
    """Spawn on a child node: ``system.spawn("thunder.runtime.device_actor:DeviceActor", node=node, kwargs=...)``.

    Args:
        replica: the replica (group) id this device leads, e.g. "g0".
        role: "prefill", "decode" or "colocated".
        engine: how to build the engine (`EngineSpec`).
        sink: the main process's sink actor (receives `StepReport`s, relays handoffs when needed).
        own_process: this actor owns its OS process (a child node): accept direct links from peer devices
            (device-to-device KV handoff) and ignore SIGINT.
    """

    roles: tuple[str, ...] = ROLES
    """The roles this kind of device can serve."""

    def __init__(
        self,
        *,
        replica: str,
        role: str,
        engine: EngineSpec | dict[str, Any],
        sink: ActorRef,
        own_process: bool = False,
    ) -> None:
        self._check_role(role)
        self.replica = replica
        self.initial_role = role
        self.spec = engine if isinstance(engine, EngineSpec) else msgspec.convert(engine, EngineSpec)
        self.sink = sink
        self.own_process = own_process
        self.core: DeviceCore | None = None
        self.address: tuple[str, int] | None = None
        self._inbox: list[Any] = []
        self._jobs: list[tuple[Any, asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        # NOTE: one compute thread for the engine's whole life, so torch's per-thread OpenMP settings
        # (`SetRole.threads`) reach every step.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"device-{replica}")
        self._share: CpuShare | None = None  # torch threads per step (`SetRole`); None: as built
        self._threads = 0  # what the compute thread runs with now (0: not set here)

    async def on_start(self) -> None:
        self.core = await self._build_core()
        if self.own_process:
            # NOTE: Ctrl-C in a terminal signals the whole process group; the main process stops the devices
            # in order (closing a node's link ends its process), so a device must not die of SIGINT first.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            self.address = await self.system.network.ensure_listening()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"device {self.replica} steps")

    async def _build_core(self) -> DeviceCore:
        # NOTE: torch and the engine load in a worker thread, so this node keeps answering heartbeats.
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, _build_core, self.spec, self.replica, self.initial_role
        )

    def _check_role(self, role: str) -> None:
        if role not in self.roles:
            raise ValueError(f"role={role!r}: {type(self).__name__} serves one of {self.roles}")

    async def on_stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._pool.shutdown(wait=False)

    def holds_work(self) -> bool:
        return self.core is not None and (bool(self._inbox) or self.core.has_work())

    # -- work that goes through the step loop ------------------------------------------------------------------
    @handler(Admit, KVHandoff, Abort)
    def queue(self, msg: Admit | KVHandoff | Abort) -> None:
        self._check_loop()
        self._inbox.append(msg)
        self._wake.set()

    @handler
    async def profile(self, msg: Profile) -> ProfileResult:
        """Time real steps (run it while the device is idle: the profile shares the engine's batch)."""
        from thunder.runtime.profile import profile_engine

        core = self._core()
        return ProfileResult(await self._job(lambda: profile_engine(core.engine, msg)))

    # -- control -----------------------------------------------------------------------------------------------
    @handler
    def set_role(self, msg: SetRole) -> str:
        self._check_role(msg.role)
        core = self._core()
        previous, core.role = core.role, msg.role
        if msg.replica:
            self.replica = core.replica = msg.replica
        if msg.threads > 0:
            from thunder.runtime.cpu_policy import CpuShare

            self._share = CpuShare(msg.threads, 0, msg.small_batch_threads)
        if msg.nice > 0 and self.own_process:  # NOTE: never renice the main process (in_process mode)
            from thunder.runtime.cpu_policy import lower_priority

            lower_priority(msg.nice)
        log.info("%s: role %s -> %s (engine kept)", self.replica, previous, msg.role)
        return previous

    @handler
    def stats(self, msg: GetStats) -> DeviceStats:
        return self._core().stats()

    @handler
    def info(self, msg: GetInfo) -> DeviceInfo:
        core = self._core()
        return DeviceInfo(
            replica=self.replica,
            role=core.role,
            pid=os.getpid(),
            node_id=self.system.node_id,
            max_model_len=core.engine.max_model_len,
            dtype=str(core.kv_dtype).removeprefix("torch."),
            address=self.address,
            stages=self._stages(),
        )

    def _stages(self) -> list[tuple[int, int, int]]:
        return []

    @handler
    @interleave
    async def peers(self, msg: Peers) -> int:
        """Link this node to each peer node (idempotent); returns how many peers are linked."""
        net = self.system.network
        for node_id, host, port in msg.peers:
            link = net.links.get(node_id)
            if node_id != self.system.node_id and (link is None or link.closed):
                await net.connect(host, port)
        return sum(1 for node_id, _, _ in msg.peers if node_id in net.links)

    @handler
    @interleave
    async def drain(self, msg: Drain) -> DeviceStats:
        async with asyncio.timeout(msg.timeout_s):
            while self.holds_work():
                self._idle.clear()
                await self._idle.wait()
        return self._core().stats()

    # -- the step loop -----------------------------------------------------------------------------------------
    async def _run(self) -> None:
        core = self._core()
        try:
            while True:
                if not (self._inbox or self._jobs or core.has_work()):
                    self._idle.set()
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                inbox, self._inbox = self._inbox, []
                jobs, self._jobs = self._jobs, []
                outcome = await self._compute(core, inbox, jobs)
                await self._publish(outcome)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # NOTE: let it crash — the next message re-raises in the actor's task
            log.exception("%s: step loop failed", self.replica)
            self._failure = exc

    async def _compute(
        self, core: DeviceCore, inbox: list[Any], jobs: list[tuple[Any, asyncio.Future[Any]]]
    ) -> StepOutcome:
        """Apply the inbox and run one step in the compute thread (the loop keeps receiving meanwhile)."""
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, self._step_sync, core, inbox, jobs
        )

    def _step_sync(
        self, core: DeviceCore, inbox: list[Any], jobs: list[tuple[Any, asyncio.Future[Any]]]
    ) -> StepOutcome:
        for job, fut in jobs:
            try:
                result = job()
            except Exception as exc:
                fut.get_loop().call_soon_threadsafe(_settle, fut, None, exc)
            else:
                fut.get_loop().call_soon_threadsafe(_settle, fut, result, None)
        for msg in inbox:
            core.apply(msg)
        if self._share is not None:
            self._set_threads(self._share.threads_for(core.num_requests))
        return core.step()

    def _set_threads(self, threads: int) -> None:
        """Run the next steps on ``threads`` torch threads (on the compute thread: OpenMP's count is per thread)."""
        if threads != self._threads:
            import torch

            torch.set_num_threads(threads)
            self._threads = threads

    async def _publish(self, outcome: StepOutcome) -> None:
        if outcome.report is not None:
            await self.sink.tell(outcome.report)  # NOTE: before the handoffs, so the first token leads
        for target, msg in outcome.handoffs:
            try:
                await target.tell(msg)
            except ActorError:  # no direct link to the decode node: relay through the main process
                await self.sink.tell(RelayHandoff(target, msg))
        self.progress()

    def _job(self, fn: Any) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._jobs.append((fn, fut))
        self._wake.set()
        return fut

    def _core(self) -> DeviceCore:
        self._check_loop()
        assert self.core is not None, "on_start builds the engine"
        return self.core

    def _check_loop(self) -> None:
        if self._failure is not None:
            raise _LoopCrashed(f"{self.replica}: step loop failed: {self._failure!r}") from self._failure


def _build_core(spec: EngineSpec, replica: str, role: str) -> DeviceCore:
    from thunder.runtime.device_core import DeviceCore
    from thunder.runtime.engines import build_engine

    return DeviceCore(
        build_engine(spec), replica=replica, role=role, max_num_seqs=spec.max_num_seqs, device=spec.device
    )


def _settle(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)
