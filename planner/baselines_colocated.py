"""Colocated replicas (prefill and decode on the same group, vLLM-style): analytic capacity, scoring, plans.

Capacity model of one colocated replica with B sequences decoding and prefill priority:
    each arrival's prefill pass stalls decoding for its whole latency E[L_p] (decode micro-batches queue behind it
    stage by stage, as the simulator runs it; E[L_p] = E[S_p] without PP), so
    λ(B) = B / (E[out]·TPOT(B) + B·E[L_p]),   effective TPOT = TPOT(B) / (1 − λ·E[L_p])
    TTFT = prefill latency + M/G/1 wait on the prefill work, whose service time is the pipeline's bottleneck-stage
    time S_p (Pollaczek–Khinchine).
The SLO-feasible capacity is the largest λ(B) over batch sizes B that fit in KV memory and keep the P90 TTFT
and the effective TPOT within the deadlines. All step times come from the planner's `CostModel`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from planner.capacity import KV_OCCUPANCY, MAX_RESIDENT_SEQUENCES, WorkloadSample
from planner.cluster import Cluster
from planner.config import ReplicaConfig
from planner.cost_model import CostModel
from planner.evaluate import INVALID, Evaluation, Evaluator, Group, canonical
from planner.model_spec import ModelSpec
from planner.plan import GroupPlan, Plan, Prediction, Routing
from planner.tabu import TabuSearch
from planner.workload import Workload

BATCH_GRID = 48
"""Batch sizes tried per replica (log-spaced up to the KV limit)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ColocatedProfile:
    rate_cap: float
    """SLO-feasible arrival rate (req/s)."""
    batch: int
    tpot: float
    ttft_p90: float


def colocated_profile(cost_model: CostModel, config: ReplicaConfig, sample: WorkloadSample) -> ColocatedProfile:
    """The SLO-feasible capacity of one colocated replica (see the module docstring)."""
    cm = cost_model
    s = sample.prompts
    load = {"tokens": s, "attn_pairs": s * (s + 1) / 2, "kv_tokens": s, "heads": 1.0}
    last = config.pp - 1
    stages = np.stack([cm.stage_cost(st, st.num_layers, first=k == 0, last=k == last, **load)  # type: ignore[arg-type]
                       for k, st in enumerate(config.stages)])
    latency = stages.sum(axis=0) + cm.hop_time(config, s)  # type: ignore[arg-type]
    service = stages.max(axis=0)
    mean_s, sq_s = float(service.mean()), float((service**2).mean())
    stall = float(latency.mean())
    lat_p90 = float(np.quantile(latency, 0.9))
    ctx = sample.mean_context
    # NOTE: a resident sequence reserves prompt + output KV for its whole life (as the simulator admits), so
    # memory is sized by the time-weighted reservation, not the mean context (which over-counts slots ~25 %).
    max_batch = min(int(cm.max_kv_tokens(config) * KV_OCCUPANCY / sample.resident_kv_tokens), MAX_RESIDENT_SEQUENCES)
    none = ColocatedProfile(rate_cap=0.0, batch=0, tpot=math.inf, ttft_p90=lat_p90)
    if max_batch < 1 or lat_p90 > sample.slo.ttft_s:
        return none
    best = none
    for b in np.unique(np.geomspace(1, max_batch, BATCH_GRID).astype(int)):
        tpot = cm.decode_step_time(config, int(b), ctx)
        rate = b / (sample.mean_output * tpot + b * stall)
        rho, blocked = rate * mean_s, rate * stall
        if blocked >= 1:
            continue
        tpot_eff = tpot / (1 - blocked)
        wait = rate * sq_s / (2 * (1 - rho))
        if tpot_eff <= sample.slo.tpot_s and lat_p90 + wait <= sample.slo.ttft_s and rate > best.rate_cap:
            best = ColocatedProfile(rate_cap=float(rate), batch=int(b), tpot=tpot_eff, ttft_p90=lat_p90 + wait)
    return best


class ColocatedEvaluator(Evaluator):
    """Scores a state whose groups are all colocated: (attainment at the sample's rate, Σ capacity).

    Phase labels in the state are ignored (a colocated search has no Flip move)."""

    def config(self, group: Group) -> ReplicaConfig | None:
        key = Group(group.members, "colocated")
        if key not in self._configs:
            self._configs[key] = self.config_fn(group.members, "colocated")
        return self._configs[key]

    def colocated(self, group: Group) -> ColocatedProfile:
        key = Group(group.members, "colocated")
        if key not in self._profiles:
            config = self.config(key)
            assert config is not None
            self._profiles[key] = colocated_profile(self.cost_model, config, self.sample)  # type: ignore[assignment]
        return self._profiles[key]  # type: ignore[return-value]

    def evaluate(self, state: Sequence[Group], *, exact: bool) -> Evaluation:
        self.evaluations += 1
        if not state or any(self.config(g) is None for g in state):
            return Evaluation(score=INVALID, prediction=None)
        caps = np.array([self.colocated(g).rate_cap for g in state])
        capacity = float(caps.sum())
        rate = self.sample.rate
        attainment = min(1.0, capacity / rate) if rate > 0 else 1.0
        tpot = float(np.mean([self.colocated(g).tpot for g in state]))
        ttft = float(np.mean([self.colocated(g).ttft_p90 for g in state]))
        pred = Prediction(slo_attainment=attainment, throughput_tokens_s=min(rate, capacity) * self.sample.mean_output,
                          goodput_rps=attainment * rate, capacity_rps=capacity, mean_ttft_s=ttft, mean_tpot_s=tpot)
        groups = canonical([Group(g.members, "colocated") for g in state])
        return Evaluation(score=(round(attainment, 3), capacity), prediction=pred, prefill=groups,
                          flows=np.array([self.colocated(g).rate_cap for g in groups]))


class ColocatedTabu(TabuSearch):
    """Planner-core's tabu search restricted to Split / Merge / Move / Swap (no phases to flip)."""

    def _flip(self, state: tuple[Group, ...], unused: frozenset[int]) -> None:
        return None


def colocated_plan(cluster: Cluster, model: ModelSpec, workload: Workload, ev: ColocatedEvaluator,
                   state: Sequence[Group], search: dict) -> Plan:
    """A `Plan` whose groups are all colocated; arrivals split in proportion to each replica's capacity."""
    evaluation = ev.evaluate(state, exact=True)
    if evaluation.prediction is None:
        raise ValueError("colocated_plan: a group cannot hold the model; pick larger groups")
    groups = evaluation.prefill
    caps = np.array([ev.colocated(g).rate_cap for g in groups])
    shares = caps / caps.sum() if caps.sum() > 0 else np.full(len(groups), 1 / len(groups))
    plans = []
    for k, g in enumerate(groups):
        config = ev.config(g)
        assert config is not None
        plans.append(GroupPlan(id=f"g{k}", phase="colocated", config=config))
    used = {d for g in plans for d in g.device_ids}
    slo = workload.effective_slo
    return Plan(
        model=model.name, groups=tuple(plans),
        routing=Routing(arrival={p.id: float(x) for p, x in zip(plans, shares, strict=True)}),
        group_links={}, prediction=evaluation.prediction,
        cost_per_hour=float(sum(cluster.device(d).price_per_hour for d in used)),
        workload=workload.name, rate=workload.rate, ttft_slo_s=slo.ttft_s, tpot_slo_s=slo.tpot_s,
        kv_compression=ev.cost_model.kv_compression,
        unused_device_ids=tuple(d.id for d in cluster.devices if d.id not in used), search=search)


__all__ = ["ColocatedEvaluator", "ColocatedProfile", "ColocatedTabu", "colocated_plan", "colocated_profile"]
