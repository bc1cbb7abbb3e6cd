"""Simulate a `Plan`: adapt its groups to the event core through the planner's own `CostModel`.

The simulator and the planner call the same cost-model code: every step time below is
`CostModel.prefill_time / prefill_interval / decode_step_time` on the group's `ReplicaConfig`, every KV handoff
is the plan's group link (α + bytes/β) with the plan's compression ratio.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from planner.capacity import MAX_RESIDENT_SEQUENCES
from planner.config import ReplicaConfig
from planner.cost_model import CostModel
from planner.plan import Plan
from planner.sim_engine import simulate_topology
from planner.sim_metrics import SimResult
from planner.sim_types import Requests, SimConfigError, SimReplica, SimTopology, poisson_requests
from planner.workload import Workload

CONTEXT_BUCKET_TOKENS = 16
"""Decode step times are memoised per (batch, mean context rounded to this many tokens): < 0.5 % error."""
DEFAULT_MAX_BATCH_TOKENS = 2048
"""Prefill token budget per iteration: the cost model reserves activations for `ACTIVATION_TOKENS` (2048), and
vLLM defaults max_num_batched_tokens to max(max_model_len, 2048). A longer prompt still runs alone."""
DEFAULT_MAX_BATCH_SIZE = MAX_RESIDENT_SEQUENCES


class CostModelPerf:
    """`ReplicaPerf` of one replica config under a `CostModel` (memoised; the cost model is pure)."""

    __slots__ = ("cost_model", "config", "_kv_tokens", "_decode_cache")

    def __init__(self, cost_model: CostModel, config: ReplicaConfig) -> None:
        self.cost_model = cost_model
        self.config = config
        self._kv_tokens = int(cost_model.max_kv_tokens(config))
        self._decode_cache: dict[tuple[int, int], float] = {}

    def prefill_time(self, prompt_lens: Sequence[int]) -> tuple[float, float]:
        stages = self.cost_model.prefill_stage_times(self.config, prompt_lens)
        latency = float(stages.sum()) + self.cost_model.hop_time(self.config, float(sum(prompt_lens)))
        return latency, float(stages.max())

    def decode_step_time(self, batch_size: int, context_tokens: int) -> float:
        bucket = int(round(context_tokens / batch_size / CONTEXT_BUCKET_TOKENS))
        key = (batch_size, bucket)
        hit = self._decode_cache.get(key)
        if hit is None:
            mean_context = max(bucket * CONTEXT_BUCKET_TOKENS, 1)
            hit = self.cost_model.decode_step_time(self.config, batch_size, mean_context)
            self._decode_cache[key] = hit
        return hit

    @property
    def kv_capacity_tokens(self) -> int:
        return self._kv_tokens


def topology_from_plan(
    plan: Plan,
    cost_model: CostModel,
    *,
    compressed: bool = True,
    routing: str = "plan",
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
) -> SimTopology:
    """The simulator's view of `plan`.

    compressed: KV crosses the wire at the plan's compression ratio (False: raw FP16 bytes, the ablation).
    routing: "plan" uses the plan's LP ratios; "round_robin" splits arrivals and handoffs evenly (the ablation).
    """
    if routing not in ("plan", "round_robin"):
        raise SimConfigError(f"routing={routing!r}; use 'plan' or 'round_robin'")
    groups = plan.groups
    ids = [g.id for g in groups]
    where = {gid: k for k, gid in enumerate(ids)}
    r = len(groups)
    replicas = tuple(
        SimReplica(name=g.id, role=g.phase, perf=CostModelPerf(cost_model, g.config),  # type: ignore[arg-type]
                   max_batch_tokens=max_batch_tokens, max_batch_size=max_batch_size)
        for g in groups
    )
    entry = np.zeros(r)
    pair = np.zeros((r, r))
    if routing == "plan":
        for gid, share in plan.routing.arrival.items():
            entry[where[gid]] = share
        for p, row in plan.routing.handoff.items():
            for d, share in row.items():
                pair[where[p], where[d]] = share
    else:
        entry[[k for k, g in enumerate(groups) if g.phase != "decode"]] = 1.0
        decode = [k for k, g in enumerate(groups) if g.phase == "decode"]
        for k, g in enumerate(groups):
            if g.phase == "prefill" and decode:
                pair[k, decode] = 1.0 / len(decode)
    if entry.sum() <= 0:
        raise SimConfigError("plan routes no arrivals (routing.arrival is empty); re-run `thunder plan`")
    entry /= entry.sum()
    latency = np.zeros((r, r))
    bandwidth = np.full((r, r), np.inf)
    for a in range(r):
        for b in range(r):
            if a != b and (link := _maybe_link(plan, ids[a], ids[b])) is not None:
                latency[a, b], bandwidth[a, b] = link.latency, link.bandwidth
    ratio = plan.kv_compression if compressed else 1.0
    return SimTopology(
        replicas=replicas, entry_ratios=entry, pair_ratios=pair, link_latency_s=latency,
        link_bandwidth_Bps=bandwidth, kv_wire_bytes_per_token=cost_model.kv_bytes_per_token / ratio,
        cost_per_hour=plan.cost_per_hour,
    )


def _maybe_link(plan: Plan, a: str, b: str):  # type: ignore[no-untyped-def]
    key = (a, b) if a < b else (b, a)
    return plan.group_links.get(key)


def workload_requests(workload: Workload, *, rate: float | None = None, n: int = 2000, seed: int = 0,
                      replay: bool = False) -> Requests:
    """`n` requests of `workload` at `rate` (default: the workload's rate).

    replay=False: Poisson arrivals, lengths drawn from the workload's samples (seeded).
    replay=True: the trace's own arrival times and lengths in order, time-scaled so the mean rate is `rate`.
    """
    rate = workload.rate if rate is None else rate
    if not replay:
        return poisson_requests(rate, workload.prompt_lens, workload.output_lens, n=n, seed=seed)
    times = workload.arrival_times_s
    if times is None:
        raise SimConfigError(f"workload {workload.name!r} has no arrival times; replay needs a trace workload")
    n = min(n, times.size)
    t = np.asarray(times[:n], dtype=float) - float(times[0])
    native = (n - 1) / t[-1] if n > 1 and t[-1] > 0 else rate
    return Requests(arrival_s=t * (native / rate), prompt_tokens=workload.prompt_lens[:n].copy(),
                    output_tokens=workload.output_lens[:n].copy())


def simulate(plan: Plan, workload: Workload, cost_model: CostModel, *, rate: float | None = None, n: int = 2000,
             seed: int = 0, replay: bool = False, compressed: bool = True, routing: str = "plan") -> SimResult:
    """Replay `n` requests of `workload` through `plan` (see `topology_from_plan`, `workload_requests`)."""
    topo = topology_from_plan(plan, cost_model, compressed=compressed, routing=routing)
    return simulate_topology(topo, workload_requests(workload, rate=rate, n=n, seed=seed, replay=replay))


def slo_of(workload: Workload) -> Mapping[str, float]:
    """{"ttft_slo_s", "tpot_slo_s"} of the workload's effective (scaled) SLO, for `SimResult` metrics."""
    slo = workload.effective_slo
    return {"ttft_slo_s": slo.ttft_s, "tpot_slo_s": slo.tpot_s}


__all__ = ["CostModelPerf", "simulate", "slo_of", "topology_from_plan", "workload_requests"]
