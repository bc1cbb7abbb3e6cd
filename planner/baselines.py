"""Baselines at the same budget, each with its own best configuration found by search, plus thunder's ablations.

- vLLM-style: a homogeneous pool, colocated replicas; searches the replica size (TP/PP per replica by the DP).
- DistServe-style: a homogeneous pool, disaggregated; searches prefill/decode replica sizes and counts.
- HexGen-style: the heterogeneous pool, colocated, asymmetric TP/PP; tabu search over groupings (no Flip).
- thunder: `planner.plan` (tabu over grouping + phase, DP, routing LP).
- ablations: thunder re-planned without KV compression; thunder's plan with round-robin routing (no LP);
  random groups (seeded) with thunder's phase designation, DP and LP.
Each `candidates` function returns plans; `best_by_simulation` keeps the one the simulator rates highest.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from planner.baselines_colocated import ColocatedEvaluator, ColocatedTabu, colocated_plan
from planner.capacity import WorkloadSample
from planner.cluster import Cluster
from planner.cost_model import CostModel
from planner.evaluate import Evaluator, Group, assign_phases
from planner.initial import initial_groups
from planner.model_spec import ModelSpec
from planner.parallel import ParallelSolver
from planner.plan import Plan
from planner.planning import INITIAL_MEMORY_HEADROOM, SEARCH_SEED_STRIDE, build_plan, default_settings, plan
from planner.replan import WorkloadShift, replan
from planner.sim_metrics import SimResult
from planner.sim_search import RateSearchResult, max_rate_at_attainment
from planner.simulate import simulate
from planner.workload import Budget, Workload

GROUP_SIZES = (1, 2, 4, 8)
TOP_K = 3
"""Candidates per baseline that are checked by simulation (the rest are pruned by the analytic score)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class System:
    """A plan plus how to run it (the ablations change the wire format or the routing, not the plan)."""

    name: str
    plan: Plan
    compressed: bool = True
    routing: str = "plan"
    description: str = ""
    replan_for_rate: Callable[[Plan, float], Plan] | None = None
    """Lightweight re-plan (phases + routing LP) for the simulated rate, as the running system would do after
    its workload profiler saw the rate; None keeps the plan as is (colocated plans route by capacity)."""

    def plan_at(self, rate: float) -> Plan:
        return self.plan if self.replan_for_rate is None else self.replan_for_rate(self.plan, rate)

    def run(self, workload: Workload, cost_model: CostModel, *, rate: float, n: int, seed: int) -> SimResult:
        return simulate(self.plan_at(rate), workload, cost_model, rate=rate, n=n, seed=seed,
                        compressed=self.compressed, routing=self.routing)


@dataclass(frozen=True, slots=True, kw_only=True)
class Scored:
    system: System
    search: RateSearchResult


def _context(cluster: Cluster, model: ModelSpec, workload: Workload, cost_model: CostModel,
             seed: int) -> tuple[Workload, WorkloadSample, ParallelSolver]:
    workload = workload.clipped(model.max_context)
    sample = WorkloadSample.of(workload, seed=seed)
    return workload, sample, ParallelSolver(cluster, cost_model, sample)


def _uniform_groups(n_devices: int, size: int) -> list[frozenset[int]]:
    return [frozenset(range(k, k + size)) for k in range(0, n_devices - size + 1, size)]


def vllm_candidates(cluster: Cluster, model: ModelSpec, workload: Workload, cost_model: CostModel,
                    *, seed: int = 0) -> list[System]:
    """Colocated replicas of each size in `GROUP_SIZES` over the whole (homogeneous) pool."""
    workload, sample, solver = _context(cluster, model, workload, cost_model, seed)
    ev = ColocatedEvaluator(cluster, cost_model, sample, solver.best_config)
    out = []
    for size in GROUP_SIZES:
        groups = _uniform_groups(len(cluster.devices), size)
        state = tuple(Group(g, "colocated") for g in groups)
        if not groups or ev.evaluate(state, exact=True).prediction is None:
            continue
        p = colocated_plan(cluster, model, workload, ev, state, {"algorithm": "vllm-style", "replica_size": size})
        out.append(System(name="vllm", plan=p, description=f"{len(groups)} colocated replicas of {size} GPU(s)"))
    return _top(out)


def distserve_candidates(cluster: Cluster, model: ModelSpec, workload: Workload, cost_model: CostModel,
                         *, seed: int = 0) -> list[System]:
    """Every split of a homogeneous pool into n_p prefill replicas of s_p devices and n_d decode replicas of s_d."""
    workload, sample, solver = _context(cluster, model, workload, cost_model, seed)
    ev = Evaluator(cluster, cost_model, sample, solver.best_config)
    n = len(cluster.devices)
    scored = []
    for s_p, s_d in itertools.product(GROUP_SIZES, GROUP_SIZES):
        for n_p in range(1, n // s_p + 1):
            n_d = (n - n_p * s_p) // s_d
            if n_d < 1:
                continue
            members = iter(range(n))
            state = [Group(frozenset(next(members) for _ in range(s_p)), "prefill") for _ in range(n_p)]
            state += [Group(frozenset(next(members) for _ in range(s_d)), "decode") for _ in range(n_d)]
            evaluation = ev.evaluate(state, exact=True)
            if evaluation.prediction is not None:
                scored.append((evaluation.score, s_p, n_p, s_d, n_d, state, evaluation))
    scored.sort(key=lambda x: x[0], reverse=True)
    out = []
    for _, s_p, n_p, s_d, n_d, state, evaluation in scored[:TOP_K]:
        used = frozenset(i for g in state for i in g.members)
        meta = {"algorithm": "distserve-style", "prefill": f"{n_p}x{s_p}", "decode": f"{n_d}x{s_d}"}
        p = build_plan(cluster, model, workload, ev, state, frozenset(range(n)) - used, evaluation, meta)
        # NOTE: identical replicas, so an even split is the routing LP's optimum at any rate.
        out.append(System(name="distserve", plan=p, routing="round_robin",
                          description=f"{n_p} prefill x {s_p} GPU(s) + {n_d} decode x {s_d} GPU(s)"))
    return out


def hexgen_candidates(cluster: Cluster, model: ModelSpec, workload: Workload, budget: Budget, cost_model: CostModel,
                      *, seed: int = 0) -> list[System]:
    """Colocated replicas on the heterogeneous pool: tabu search (Split / Merge / Move, then the same Swap polish as
    thunder) over groupings from the bandwidth-clustering start, asymmetric TP/PP per group by the same DP as thunder;
    as many independent searches as thunder's `plan()` runs (`TabuSettings.searches`), the best kept."""
    workload, sample, solver = _context(cluster, model, workload, cost_model, seed)
    ev = ColocatedEvaluator(cluster, cost_model, sample, solver.best_config)
    min_bytes = model.weight_bytes(cost_model.dtype_bytes) * INITIAL_MEMORY_HEADROOM
    groups, unused = initial_groups(cluster, lambda m: solver.best_config(sorted(m), "colocated") is not None,
                                    min_bytes)
    prices = np.array([d.price_per_hour for d in cluster.devices])
    settings = default_settings(len(cluster.devices))
    bests = []
    for k in range(max(settings.searches, 1)):  # as many independent searches as thunder's plan() runs
        search = ColocatedTabu(ev, prices, budget.usd_per_hour, settings, seed + SEARCH_SEED_STRIDE * k)
        for _ in search.run(tuple(Group(g, "colocated") for g in groups), frozenset(unused)):
            pass
        assert search.best is not None
        bests.append(search.best)
    state = search.polish(*max(bests, key=lambda b: b[2].score))[0]
    p = colocated_plan(cluster, model, workload, ev, state, {"algorithm": "hexgen-style tabu", "seed": seed})
    return [System(name="hexgen", plan=p, description=f"{len(p.groups)} colocated heterogeneous replicas")]


def thunder_systems(cluster: Cluster, model: ModelSpec, workload: Workload, budget: Budget, cost_model: CostModel,
                    *, seed: int = 0, ablations: bool = True) -> dict[str, System]:
    """thunder and (if `ablations`) its three ablations: "no-compression", "no-routing-lp", "random-groups"."""
    best = plan(cluster, model, workload, budget, seed=seed, cost_model=cost_model)
    adapt = rate_replanner(cluster, model, workload, cost_model, seed=seed)
    thunder = System(name="thunder", plan=best, replan_for_rate=adapt,
                     description="tabu + DP + routing LP, 4-bit KV on the wire")
    if not ablations:
        return {"thunder": thunder}
    raw = plan(cluster, model, workload, budget, seed=seed, cost_model=cost_model, compress_kv=False)
    return {
        "thunder": thunder,
        "no-compression": System(name="no-compression", plan=raw, compressed=False, replan_for_rate=adapt,
                                 description="re-planned and served with FP16 KV on the wire"),
        "no-routing-lp": System(name="no-routing-lp", plan=best, routing="round_robin", replan_for_rate=adapt,
                                description="thunder's plan, arrivals and handoffs split round-robin"),
        "random-groups": random_groups_system(cluster, model, workload, cost_model, seed=seed),
    }


def rate_replanner(cluster: Cluster, model: ModelSpec, workload: Workload, cost_model: CostModel,
                   *, seed: int = 0) -> Callable[[Plan, float], Plan]:
    """`replan` with a `WorkloadShift` to the given rate: keeps groups and configs, re-solves phases + routing."""
    def adapt(p: Plan, rate: float) -> Plan:
        shift = WorkloadShift(workload=workload.with_rate(rate))
        return replan(p, [shift], cluster=cluster, model=model, workload=workload, cost_model=cost_model, seed=seed)

    return adapt


def random_groups_system(cluster: Cluster, model: ModelSpec, workload: Workload, cost_model: CostModel,
                         *, seed: int = 0) -> System:
    """Heterogeneity-blind grouping: devices in a seeded random order are cut into the first chunks that hold a
    replica; phases, parallel configs and routing then come from thunder's lower level as usual."""
    workload, sample, solver = _context(cluster, model, workload, cost_model, seed)
    ev = Evaluator(cluster, cost_model, sample, solver.best_config)
    order = np.random.default_rng(seed).permutation(len(cluster.devices)).tolist()
    groups: list[frozenset[int]] = []
    chunk: list[int] = []
    for i in order:
        chunk.append(i)
        if solver.best_config(sorted(chunk), "decode") is not None:
            groups.append(frozenset(chunk))
            chunk = []
    state = assign_phases(ev, groups)
    evaluation = ev.evaluate(state, exact=True)
    p = build_plan(cluster, model, workload, ev, state, frozenset(chunk), evaluation,
                   {"algorithm": "random groups", "seed": seed})
    return System(name="random-groups", plan=p, description="random device groups, thunder's lower level",
                  replan_for_rate=rate_replanner(cluster, model, workload, cost_model, seed=seed))


def _top(systems: list[System]) -> list[System]:
    return sorted(systems, key=lambda s: s.plan.prediction.capacity_rps, reverse=True)[:TOP_K]


def rate_search(system: System, workload: Workload, cost_model: CostModel, *, n: int, seed: int,
                target: float = 0.9, warmup: float = 0.0) -> RateSearchResult:
    """The highest Poisson rate at which `system` keeps ≥ `target` SLO attainment (simulated; attainment over the
    requests after the first `warmup` share of arrivals)."""
    slo = workload.effective_slo
    guess = max(system.plan.prediction.capacity_rps, 0.05)

    def run(rate: float) -> SimResult:
        return system.run(workload, cost_model, rate=rate, n=n, seed=seed)

    return max_rate_at_attainment(run, ttft_slo_s=slo.ttft_s, tpot_slo_s=slo.tpot_s, target=target, guess=guess,
                                  warmup=warmup)


def best_by_simulation(systems: Sequence[System], workload: Workload, cost_model: CostModel, *, n: int = 1500,
                       seed: int = 0, on_result: Callable[[Scored], None] | None = None,
                       warmup: float = 0.0) -> Scored:
    """Simulate every candidate's max rate at 90 % attainment and keep the best."""
    if not systems:
        raise ValueError("best_by_simulation: no candidate systems (every configuration failed to fit the model)")
    best: Scored | None = None
    for system in systems:
        scored = Scored(system=system, search=rate_search(system, workload, cost_model, n=n, seed=seed,
                                                             warmup=warmup))
        if on_result is not None:
            on_result(scored)
        if best is None or scored.search.rate > best.search.rate:
            best = scored
    assert best is not None
    return best


__all__ = [
    "Scored",
    "System",
    "best_by_simulation",
    "distserve_candidates",
    "hexgen_candidates",
    "random_groups_system",
    "rate_search",
    "thunder_systems",
    "vllm_candidates",
]
