"""Router actor: plan ratios (x0i, xij) applied exactly, SLO-predicted misses skipped, aborts fanned out.

The replicas here are `Inbox` actors that record what the router sends them: this tests the routing
decisions alone; the real device actors are driven end to end in `tests/thunder/test_e2e_openai.py`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from actors import Actor, ActorRef, ActorSystem, handler
from thunder.runtime.messages import Abort, Admit, DeviceStats, Sampling
from thunder.runtime.router import (
    GetRouterState,
    Progress,
    Router,
    RoutingTable,
    SetDraining,
    SetTable,
    Submit,
)
from thunder.runtime.routing import SloTargets
from thunder.runtime.streams import StreamTable

SAMPLING = Sampling(max_tokens=4, temperature=0.0)


class Flush:
    """Answered after every message queued before it (mailboxes are FIFO)."""


class Inbox(Actor):
    def __init__(self, log: list[Any]) -> None:
        self.log = log

    @handler(Admit, Abort)
    def record(self, msg: Admit | Abort) -> None:
        self.log.append(msg)

    @handler(Flush)
    def flush(self, msg: Flush) -> int:
        return len(self.log)


def stats(replica: str, role: str) -> DeviceStats:
    return DeviceStats(replica=replica, role=role, running=0, waiting=0, held=0, kv_pages_used=0,
                       kv_pages_total=100, steps=1, num_preemptions=0, max_num_seqs=64)


class Setup:
    def __init__(self, router: ActorRef, devices: dict[str, ActorRef], logs: dict[str, list[Any]]) -> None:
        self.router, self.devices, self.logs = router, devices, logs

    async def settle(self) -> dict[str, Any]:
        """Wait until the router and every replica handled what was sent so far; the router's state."""
        state: dict[str, Any] = await self.router.ask(GetRouterState())
        for ref in self.devices.values():
            await ref.ask(Flush())
        return state


async def start(system: ActorSystem, roles: dict[str, str], arrival: dict[str, float],
                handoff: dict[str, dict[str, float]]) -> Setup:
    logs: dict[str, list[Any]] = {g: [] for g in roles}
    devices = {g: await system.spawn(Inbox, logs[g]) for g in roles}
    router = await system.spawn(Router, kwargs={"slo": SloTargets(ttft_s=1.0, tpot_s=0.1), "streams": StreamTable()})
    await router.ask(SetTable(RoutingTable(devices=devices, roles=roles, arrival=arrival, handoff=handoff)))
    return Setup(router, devices, logs)


async def test_arrival_and_handoff_ratios_are_applied_exactly() -> None:
    roles = {"p0": "prefill", "p1": "prefill", "d0": "decode", "d1": "decode"}
    async with ActorSystem() as system:
        s = await start(system, roles, {"p0": 0.75, "p1": 0.25}, {"p0": {"d0": 2 / 3, "d1": 1 / 3}, "p1": {"d1": 1.0}})
        for i in range(24):
            await s.router.tell(Submit(request_id=f"r{i}", prompt_token_ids=[1, 2, 3], sampling=SAMPLING))
        await s.settle()
        logs = s.logs
    assert len(logs["p0"]) == 18 and len(logs["p1"]) == 6
    assert not logs["d0"] and not logs["d1"]  # decode devices get KV from the prefill devices, not admissions
    assert Counter(m.handoff_replica for m in logs["p0"]) == Counter({"d0": 12, "d1": 6})
    assert {m.handoff_replica for m in logs["p1"]} == {"d1"}
    first = logs["p0"][0]
    assert first.kv_dtype == "int4" and first.handoff_to is not None and first.prompt_token_ids == [1, 2, 3]


async def test_replica_predicted_to_miss_ttft_is_skipped() -> None:
    roles = {"p0": "prefill", "p1": "prefill", "d0": "decode"}
    async with ActorSystem() as system:
        s = await start(system, roles, {"p0": 0.5, "p1": 0.5}, {"p0": {"d0": 1.0}, "p1": {"d0": 1.0}})
        # p0 measured at 10 ms per prompt token: a 200-token prompt there predicts TTFT 2 s > 1 s SLO.
        await s.router.tell(Progress(stats=stats("p0", "prefill"), step_s=1.0, prefill_tokens=100, decode_tokens=0,
                                     first_token_ids=[], finished_ids=[]))
        for i in range(6):
            await s.router.tell(Submit(request_id=f"r{i}", prompt_token_ids=list(range(200)), sampling=SAMPLING))
        state = await s.settle()
        logs = s.logs
    assert len(logs["p1"]) == 6 and not logs["p0"]
    assert state["replicas"]["p1"]["queued_prompt_tokens"] == 1200
    assert state["in_flight"] == 6


async def test_draining_replica_gets_nothing_new() -> None:
    roles = {"c0": "colocated", "c1": "colocated"}
    async with ActorSystem() as system:
        s = await start(system, roles, {"c0": 0.5, "c1": 0.5}, {})
        await s.router.ask(SetDraining("c0"))
        for i in range(4):
            await s.router.tell(Submit(request_id=f"r{i}", prompt_token_ids=[5], sampling=SAMPLING))
        await s.router.ask(SetDraining("c0", False))
        for i in range(4, 6):
            await s.router.tell(Submit(request_id=f"r{i}", prompt_token_ids=[5], sampling=SAMPLING))
        await s.settle()
    assert [m.request_id for m in s.logs["c0"]] == ["r4"]  # back in the rotation right after
    assert len(s.logs["c1"]) == 5


async def test_when_every_replica_would_miss_the_least_loaded_takes_it() -> None:
    roles = {"c0": "colocated", "c1": "colocated"}
    async with ActorSystem() as system:
        s = await start(system, roles, {"c0": 0.5, "c1": 0.5}, {})
        for g, step in (("c0", 0.5), ("c1", 0.3)):  # both decode slower than the 0.1 s TPOT SLO
            await s.router.tell(Progress(stats=stats(g, "colocated"), step_s=step, prefill_tokens=0, decode_tokens=1,
                                         first_token_ids=[], finished_ids=[]))
        await s.router.tell(Submit(request_id="r", prompt_token_ids=[5], sampling=SAMPLING))
        state = await s.settle()
        logs = s.logs
    assert len(logs["c1"]) == 1 and logs["c1"][0].handoff_to is None
    assert state["skipped_for_slo"] == 1


async def test_abort_reaches_prefill_and_decode_and_progress_frees_accounting() -> None:
    roles = {"p0": "prefill", "d0": "decode"}
    async with ActorSystem() as system:
        s = await start(system, roles, {"p0": 1.0}, {"p0": {"d0": 1.0}})
        for rid in ("a", "b"):
            await s.router.tell(Submit(request_id=rid, prompt_token_ids=[1, 2], sampling=SAMPLING))
        await s.router.tell(Progress(stats=stats("p0", "prefill"), step_s=0.01, prefill_tokens=4, decode_tokens=0,
                                     first_token_ids=["a", "b"], finished_ids=[]))
        await s.router.tell(Abort(["a", "unknown"]))
        await s.router.tell(Progress(stats=stats("d0", "decode"), step_s=0.01, prefill_tokens=0, decode_tokens=1,
                                     first_token_ids=[], finished_ids=["b"]))
        state = await s.settle()
        logs = s.logs
    aborts = {g: [m for m in log if isinstance(m, Abort)] for g, log in logs.items()}
    assert aborts == {"p0": [Abort(["a"])], "d0": [Abort(["a"])]}
    assert state["in_flight"] == 0
    assert state["replicas"]["p0"]["queued_prompt_tokens"] == 0 and state["replicas"]["d0"]["active"] == 0
