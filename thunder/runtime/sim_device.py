"""Simulated device actors (``--engine sim``): a `DeviceActor` whose engine is a `SimEngine`.

One `SimDeviceActor` stands for a whole replica group (its `SimEngine` prices every step for the group's
TP/PP config with the planner's cost model), lives in the main process (no weights: cheap), and differs from
a real device actor in exactly three places:

- **time**: after each step it awaits ``asyncio.sleep(step seconds)`` before publishing, so the device is busy
  for the simulated duration (on the actors test kit's virtual clock this costs no real time);
- **KV handoff**: the message carries the KV *shape* only; the wire bytes are those `kernels_ext.pack_kv`
  would produce for the chosen ``--kv-transfer-dtype`` (`predict_wire_nbytes`);
- **links**: a handoff lands after α + bytes/β over the plan's link to the decode group, transfers on one
  link serialised (`thunder.runtime.sim_links`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from actors import ActorError, ActorRef
from kernels_ext import predict_wire_nbytes
from thunder.engine.sim_engine import SimEngine, SimKV
from thunder.runtime.device_actor import DeviceActor
from thunder.runtime.device_core import DeviceCore, StepOutcome, _Request
from thunder.runtime.messages import HandoffRecord, KVHandoff, RelayHandoff
from thunder.runtime.sim_links import LinkSpec, SimLinks

if TYPE_CHECKING:
    from planner import CostModel
    from thunder.engine import RequestOutput
    from thunder.runtime.messages import EngineSpec

__all__ = ["SimDeviceActor", "SimDeviceCore"]

log = logging.getLogger(__name__)


class SimDeviceCore(DeviceCore):
    """`DeviceCore` over a `SimEngine`: step time is simulated, handoffs carry the KV shape and its wire size."""

    engine: SimEngine

    def step(self) -> StepOutcome:
        self.engine.last_step_seconds = 0.0
        outcome = super().step()
        if outcome.report is not None:
            outcome.report = msgspec.structs.replace(outcome.report, step_s=self.engine.last_step_seconds)
        return outcome

    def _handoff(self, out: RequestOutput, req: Any, records: list[HandoffRecord]) -> tuple[Any, KVHandoff]:
        start = time.perf_counter()
        try:
            kv = self.engine.export_kv(out.request_id)
        finally:
            self.engine.release(out.request_id)
        header = {"sim_shape": list(kv.shape), "dtype": req.kv_dtype, "group_size": req.kv_group_size}
        msg = KVHandoff(
            request_id=out.request_id,
            prompt_token_ids=req.prompt_token_ids,
            sampling=req.sampling,
            first_token=out.new_token_ids[-1],
            src_replica=self.replica,
            header=header,
            payload=None,
            scales=None,
            mins=None,
        )
        records.append(
            HandoffRecord(
                request_id=out.request_id,
                dst_replica=req.handoff_replica,
                wire_nbytes=predict_wire_nbytes(kv.shape, dtype=req.kv_dtype, group_size=req.kv_group_size),
                fp16_nbytes=predict_wire_nbytes(kv.shape, dtype="fp16"),
                seconds=time.perf_counter() - start,
            )
        )
        return req.handoff_to, msg

    def _import(self, msg: KVHandoff) -> None:
        shape = msg.header.get("sim_shape")
        if shape is None:
            raise ValueError(
                f"KV handoff of {msg.request_id} is not from a simulated device; engines must match"
            )
        kv = SimKV(tuple(shape))  # type: ignore[arg-type]
        self.engine.add_request(
            msg.request_id, msg.prompt_token_ids, msg.sampling.to_params(), kv=kv, first_token=msg.first_token
        )
        self._reqs[msg.request_id] = _Request(msg.prompt_token_ids, msg.sampling, 1, False)


class SimDeviceActor(DeviceActor):
    """A simulated replica group in this process. Spawn with ``system.spawn(SimDeviceActor, kwargs=...)``.

    Args (beyond `DeviceActor`'s): ``kv_links`` — the plan's link to each other group (`kv_links_of`);
    ``cost_model`` — the planner's cost model to time steps with (default: the GPU catalog's).
    """

    def __init__(
        self,
        *,
        replica: str,
        role: str,
        engine: EngineSpec | dict[str, Any],
        sink: ActorRef,
        kv_links: Mapping[str, LinkSpec] | None = None,
        cost_model: CostModel | None = None,
    ) -> None:
        super().__init__(replica=replica, role=role, engine=engine, sink=sink, own_process=False)
        self.links = SimLinks(kv_links or {})
        self.cost_model = cost_model
        self._transfers: set[asyncio.Task[None]] = set()

    async def on_start(self) -> None:
        engine = SimEngine.from_spec(self.spec, cost_model=self.cost_model)
        self.core = SimDeviceCore(
            engine,
            replica=self.replica,
            role=self.initial_role,
            max_num_seqs=self.spec.max_num_seqs,
            device="cpu",
        )
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"sim device {self.replica} steps"
        )

    async def on_stop(self) -> None:
        for task in self._transfers:
            task.cancel()
        await asyncio.gather(*self._transfers, return_exceptions=True)
        await super().on_stop()

    async def _compute(
        self, core: DeviceCore, inbox: list[Any], jobs: list[tuple[Any, asyncio.Future[Any]]]
    ) -> StepOutcome:
        # NOTE: inline, not in a thread: a simulated step is cheap, and only timers then advance the clock
        # (a thread would let the test kit's virtual clock jump past a step still being computed).
        return self._step_sync(core, inbox, jobs)

    async def _publish(self, outcome: StepOutcome) -> None:
        report = outcome.report
        if report is None:
            self.progress()
            return
        await asyncio.sleep(report.step_s)  # NOTE: the device is busy for the simulated step
        await self.sink.tell(report)
        now = asyncio.get_running_loop().time()
        for (target, msg), record in zip(outcome.handoffs, report.handoffs, strict=True):
            delay = self.links.schedule(record.dst_replica, record.wire_nbytes, now)
            task = asyncio.get_running_loop().create_task(self._deliver(target, msg, delay))
            self._transfers.add(task)
            task.add_done_callback(self._transfers.discard)
        self.progress()

    async def _deliver(self, target: ActorRef, msg: KVHandoff, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await target.tell(msg)
        except ActorError:
            await self.sink.tell(RelayHandoff(target, msg))
