"""Throughput upper bounds of a pool under the cost model: what any plan could reach, without queueing or tails.

Both bounds are disaggregated and count a request as served when its prefill and its decode fit in the pool's
time and memory; neither has a TTFT tail, KV-slot queueing or routing imbalance, so a simulated max rate at 90 %
attainment sits below them. They tell how much of a result is the plan and how much is the pool.

- `fluid_bound`: devices are a continuum per GPU type. Prefill devices serve λ·E[prefill FLOPs] at their effective
  FLOP/s. Decode devices form ⌈n/8⌉ replicas (`MAX_GROUP_DEVICES`), each storing the weights once; the rest of
  their memory holds KV for resident sequences (E[(prompt + out)·out]/E[out] tokens each), and a step reads
  weights + resident KV at the pooled bandwidth (TP-like: no pipeline re-reads, no all-reduce), capped by the TPOT
  deadline. The best split of each type's devices between the phases is enumerated.
- `structured_bound`: the same, but replicas are unions of node slices (the smallest equal slice of a node's
  same-type devices that holds a replica) with the parallel config `ParallelSolver` gives them, timed by the cost
  model: prefill at one prompt per issue interval (averaged over every prompt of the trace), 100 % busy; decode with the KV full (or as many sequences as
  the TPOT deadline allows). A DP over the slices keeps the Pareto front of (prefill, decode) req/s.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from planner.capacity import MAX_RESIDENT_SEQUENCES, WorkloadSample
from planner.cluster import Cluster
from planner.cost_model import CostModel
from planner.parallel import MAX_GROUP_DEVICES, ParallelSolver
from planner.workload import Workload

PREFILL_GRID = 64
"""Prompt lengths at which a replica's prefill issue interval is tabulated (then averaged over every prompt)."""
PARETO_POINTS = 64
"""Points of the (prefill, decode) Pareto front kept per DP state."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Bound:
    """An upper bound on req/s: min(prefill, decode) of the best split; `groups` as (phase, device ids)."""

    rate: float
    prefill_rps: float
    decode_rps: float
    groups: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class _Lengths:
    mean_output: float
    context: float
    """KV tokens a decode step reads per resident sequence (`WorkloadSample.mean_context`)."""
    resident: float
    """KV tokens a resident sequence reserves (`WorkloadSample.resident_kv_tokens`)."""
    prefill_flops: float


def _lengths(workload: Workload, cost_model: CostModel) -> _Lengths:
    """Length statistics over every request of the (clipped) trace, not a sample."""
    m = cost_model.model
    wl = workload.clipped(m.max_context)
    whole = WorkloadSample(prompts=wl.prompt_lens.astype(np.float64), outputs=wl.output_lens.astype(np.float64),
                           rate=wl.rate, slo=wl.effective_slo)
    p = whole.prompts
    flops = m.num_layers * (p * m.layer_linear_flops_per_token + m.attention_flops_per_token_context * p * (p + 1) / 2)
    return _Lengths(mean_output=whole.mean_output, context=whole.mean_context, resident=whole.resident_kv_tokens,
                    prefill_flops=float(flops.mean()) + m.lm_head_flops_per_token)


def fluid_bound(cluster: Cluster, cost_model: CostModel, workload: Workload) -> Bound:
    """Best split of each GPU type's devices between prefill and decode, resources pooled (see module doc)."""
    ln = _lengths(workload, cost_model)
    types = sorted({d.gpu_type for d in cluster.devices})
    count = {t: sum(d.gpu_type == t for d in cluster.devices) for t in types}
    const = {t: cost_model.constants(t) for t in types}
    weights = float(cost_model.model.weight_bytes(cost_model.dtype_bytes))
    per_replica = weights + cost_model.activation_bytes()
    kv_token = float(cost_model.kv_bytes_per_token)
    tpot = workload.effective_slo.tpot_s
    best = Bound(rate=0.0, prefill_rps=0.0, decode_rps=0.0)
    for split in itertools.product(*(range(count[t] + 1) for t in types)):
        dec = dict(zip(types, split, strict=True))
        n_dec = sum(split)
        if n_dec == 0 or n_dec == len(cluster.devices):
            continue
        prefill = sum((count[t] - dec[t]) * const[t].flops for t in types) / ln.prefill_flops
        replicas = math.ceil(n_dec / MAX_GROUP_DEVICES)
        memory = sum(dec[t] * const[t].memory_bytes for t in types)
        bandwidth = sum(dec[t] * const[t].mem_bw for t in types)
        kv = memory - replicas * per_replica
        if kv <= 0:
            continue
        resident = kv / kv_token / ln.resident
        resident = min(resident, (tpot * bandwidth - replicas * weights) / (ln.context * kv_token))
        if resident <= 0:
            continue
        step = (replicas * weights + resident * ln.context * kv_token) / bandwidth
        decode = resident / step / ln.mean_output
        if min(prefill, decode) > best.rate:
            best = Bound(rate=min(prefill, decode), prefill_rps=prefill, decode_rps=decode,
                         groups=(("decode", tuple(f"{dec[t]}x {t}" for t in types if dec[t])),))
    return best


def node_slices(cluster: Cluster, solver: ParallelSolver) -> list[tuple[int, ...]]:
    """Each node's same-type devices cut into the smallest equal slices that hold a replica (whole if none)."""
    out = []
    for idx in cluster.node_type_buckets().values():
        n = len(idx)
        size = next((k for k in range(1, n + 1) if n % k == 0 and solver.best_config(idx[:k], "decode") is not None), n)
        out += [tuple(idx[k:k + size]) for k in range(0, n, size)]
    return out


def _rates(cost_model: CostModel, solver: ParallelSolver, members: list[int], prompts: np.ndarray, ln: _Lengths,
           tpot: float) -> tuple[float, float]:
    cm = cost_model
    pre = solver.best_config(members, "prefill")
    prefill = 0.0
    if pre is not None:  # the interval is smooth in the prompt length: tabulate it, average it over every prompt
        grid = np.unique(np.linspace(1, prompts.max(), PREFILL_GRID).round())
        interval = np.array([cm.prefill_interval(pre, [int(p)]) for p in grid])
        prefill = 1.0 / float(np.interp(prompts, grid, interval).mean())
    dec = solver.best_config(members, "decode")
    decode = 0.0
    if dec is not None:
        slots = min(int(cm.max_kv_tokens(dec) / ln.resident), MAX_RESIDENT_SEQUENCES)
        while slots > 0 and cm.decode_step_time(dec, slots, ln.context) > tpot:
            slots -= 1
        if slots > 0:
            decode = slots / cm.decode_step_time(dec, slots, ln.context) / ln.mean_output
    return prefill, decode


def structured_bound(cluster: Cluster, cost_model: CostModel, workload: Workload, *, seed: int = 0) -> Bound:
    """Best partition of node slices into prefill and decode replicas, each timed with its solved config."""
    ln = _lengths(workload, cost_model)
    wl = workload.clipped(cost_model.model.max_context)
    solver = ParallelSolver(cluster, cost_model, WorkloadSample.of(wl, seed=seed))
    prompts = wl.prompt_lens.astype(np.float64)
    units = node_slices(cluster, solver)
    tpot = wl.effective_slo.tpot_s
    groups: dict[int, tuple[float, float]] = {}
    for mask in range(1, 1 << len(units)):
        members = sorted(i for k, u in enumerate(units) if mask >> k & 1 for i in u)
        if len(members) <= MAX_GROUP_DEVICES:
            rates = _rates(cost_model, solver, members, prompts, ln, tpot)
            if max(rates) > 0:
                groups[mask] = rates
    by_low: dict[int, list[int]] = {}
    for g in groups:
        by_low.setdefault(g & -g, []).append(g)
    Front = list[tuple[float, float, tuple[tuple[str, int], ...]]]
    fronts: dict[int, Front] = {0: [(0.0, 0.0, ())]}
    for mask in range(1, 1 << len(units)):
        low = mask & -mask
        cands: Front = list(fronts[mask ^ low])  # the lowest slice left unused
        for g in by_low.get(low, []):
            if g & ~mask:
                continue
            lp, ld = groups[g]
            for p, d, parts in fronts[mask ^ g]:
                cands += [(p + lp, d, (*parts, ("prefill", g))), (p, d + ld, (*parts, ("decode", g)))]
        cands.sort(key=lambda c: (-c[0], -c[1]))
        front: Front = []
        for c in cands:
            if not front or c[1] > front[-1][1] + 1e-12:
                front.append(c)
        if len(front) > PARETO_POINTS:
            keep = np.unique(np.linspace(0, len(front) - 1, PARETO_POINTS).round().astype(int))
            front = [front[k] for k in keep]
        fronts[mask] = front
    p, d, parts = max(fronts[(1 << len(units)) - 1], key=lambda c: min(c[0], c[1]))
    named = tuple((phase, tuple(cluster.devices[i].id for k, u in enumerate(units) if g >> k & 1 for i in u))
                  for phase, g in parts)
    return Bound(rate=min(p, d), prefill_rps=p, decode_rps=d, groups=named)


__all__ = ["Bound", "fluid_bound", "node_slices", "structured_bound"]
