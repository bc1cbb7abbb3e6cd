"""Lightweight re-planning: keep every group and its parallel config (no weight reload); re-solve only the phase
designation (Flip moves, hill-climbing) and the routing LP after device loss/return, bandwidth change or a
workload shift. A full `plan()` remains the heavier alternative.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from planner.capacity import WorkloadSample
from planner.cluster import Cluster
from planner.config import ReplicaConfig
from planner.cost_model import CostModel
from planner.errors import PlanError
from planner.evaluate import Evaluation, Evaluator, Group, canonical
from planner.model_spec import ModelSpec
from planner.plan import GroupPlan, Plan
from planner.planning import assemble_plan
from planner.workload import Workload


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceLost:
    device_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceReturned:
    device_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BandwidthChanged:
    """The link between two devices (or every device pair of two nodes) now has `bandwidth` bytes/s."""

    a: str
    b: str
    bandwidth: float
    latency: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadShift:
    workload: Workload


Event = DeviceLost | DeviceReturned | BandwidthChanged | WorkloadShift


def replan(plan: Plan, events: Sequence[Event], *, cluster: Cluster, model: ModelSpec, workload: Workload,
           cost_model: CostModel | None = None, seed: int = 0, compress_kv: bool | None = None) -> Plan:
    """A new plan with the same groups and parallel configs; phases and routing re-solved for `events`.

    A group with a lost device goes inactive; it comes back when all its devices have returned.
    """
    start = time.perf_counter()
    down = set(plan.search.get("lost_device_ids", []))
    for event in events:
        if isinstance(event, DeviceLost):
            cluster.device(event.device_id)
            down.add(event.device_id)
        elif isinstance(event, DeviceReturned):
            down.discard(event.device_id)
        elif isinstance(event, BandwidthChanged):
            cluster = cluster.with_link(event.a, event.b, bandwidth=event.bandwidth, latency=event.latency)
        elif isinstance(event, WorkloadShift):
            workload = event.workload
    workload = workload.clipped(model.max_context)
    cost_model = cost_model or CostModel.from_catalog(model, cluster.gpu_types())
    compressed = plan.kv_compression > 1.0 if compress_kv is None else compress_kv
    configs: dict[frozenset[int], ReplicaConfig] = {}
    ids: dict[frozenset[int], str] = {}
    phases: dict[frozenset[int], str] = {}
    active: list[frozenset[int]] = []
    inactive: list[GroupPlan] = []
    for g in (*plan.groups, *plan.inactive_groups):
        members = frozenset(cluster.index[d] for d in g.device_ids)
        configs[members], ids[members], phases[members] = g.config, g.id, g.phase
        if down.intersection(g.device_ids):
            inactive.append(g)
        else:
            active.append(members)
    if len(active) < 2:
        raise PlanError(f"only {len(active)} group(s) survive {len(down)} lost device(s); a disaggregated plan needs "
                        ">= 2 — run a full plan() on the remaining devices")

    def fixed_config(members: frozenset[int], phase: str) -> ReplicaConfig | None:
        return configs[members]

    ev = Evaluator(cluster, cost_model, WorkloadSample.of(workload, seed=seed), fixed_config, compressed=compressed)
    state = canonical([Group(m, phases[m]) for m in active])
    state, best = climb_phases(ev, state)
    group_ids = {g: ids[g.members] for g in state}
    meta = {**plan.search, "algorithm": "replan", "lost_device_ids": sorted(down),
            "replan_seconds": round(time.perf_counter() - start, 4)}
    unused = frozenset(cluster.index[d] for d in plan.unused_device_ids if d in cluster.index)
    return assemble_plan(cluster, model, workload, ev, state, group_ids, unused, best, meta, inactive)


EXACT_CLIMB_GROUPS = 16
"""Up to this many groups the phase climb scores every Flip with the routing LP (a few ms each at 32 devices);
above it, flips are scored with the fast proportional routing and only the final choice is checked exactly."""


def climb_phases(ev: Evaluator, state: tuple[Group, ...]) -> tuple[tuple[Group, ...], Evaluation]:
    """Best-improvement hill-climbing over single Flip moves, then the exact (LP) evaluation of the result.

    NOTE: past the fast score's capacity every state scores 0 attainment with proportional routing, so near
    saturation (where a re-plan for a higher rate matters most) only LP-routed scores rank phase assignments;
    small plans therefore climb on exact scores. Large ones climb on fast scores and keep the starting phases
    unless the climbed state also wins exactly."""
    def flipped(s: tuple[Group, ...], k: int) -> tuple[Group, ...]:
        g = s[k]
        return canonical([*s[:k], Group(g.members, "decode" if g.phase == "prefill" else "prefill"), *s[k + 1:]])

    exact = len(state) <= EXACT_CLIMB_GROUPS
    start, start_eval = state, ev.evaluate(state, exact=True)
    current = start_eval.score if exact else ev.evaluate(state, exact=False).score
    best_eval = start_eval
    for _ in range(len(state)):
        evals = [(ev.evaluate(flipped(state, k), exact=exact), k) for k in range(len(state))]
        top, k = max(evals, key=lambda c: (c[0].score, -c[1]))
        if top.score <= current:
            break
        state, current, best_eval = flipped(state, k), top.score, top
    if not exact and state != start:
        climbed = ev.evaluate(state, exact=True)
        state, best_eval = (state, climbed) if climbed.score > start_eval.score else (start, start_eval)
    if best_eval.prediction is None:
        raise PlanError("no phase assignment of the surviving groups serves both prefill and decode")
    return state, best_eval


__all__ = ["EXACT_CLIMB_GROUPS", "BandwidthChanged", "DeviceLost", "DeviceReturned", "Event", "WorkloadShift",
           "climb_phases", "replan"]

