"""Per-replica service profiles: latency per request, SLO-feasible capacity, and load-dependent decode TPOT.

These are the analytical (queueing) pieces the search, the routing LP and re-planning score plans with.
Prefill replica: M/G/1 queue whose service time is the pipeline's bottleneck-stage time per request
(`W = λE[S²] / (2(1-λE[S]))`, Pollaczek–Khinchine); TTFT = W + prefill latency. Its capacity is the largest λ at
which `ATTAIN_TARGET` of requests still meet the TTFT deadline. Decode replica: continuous batching with B
sequences in flight; by Little's law B = λ·E[out]·TPOT(B); capacity is reached at the largest B that fits in KV
memory and keeps TPOT within the deadline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from planner.config import ReplicaConfig
from planner.cost_model import CostModel
from planner.workload import SLO, Workload

ATTAIN_TARGET = 0.9
"""Share of requests that must meet the deadline when sizing a replica's SLO-feasible capacity."""
SAMPLE_SIZE = 256
KV_OCCUPANCY = 0.9
"""Share of a decode replica's KV memory usable before it must stop admitting (fragmentation, growth)."""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class WorkloadSample:
    """A fixed, seeded sample of (prompt, output) lengths used for every analytical estimate of one search."""

    prompts: np.ndarray
    outputs: np.ndarray
    rate: float
    slo: SLO

    @classmethod
    def of(cls, workload: Workload, n: int = SAMPLE_SIZE, seed: int = 0) -> WorkloadSample:
        prompts, outputs = workload.sample(n, seed)
        return cls(prompts=prompts.astype(np.float64), outputs=outputs.astype(np.float64), rate=workload.rate,
                   slo=workload.effective_slo)

    @property
    def mean_output(self) -> float:
        return float(self.outputs.mean())

    @property
    def mean_context(self) -> float:
        """Mean KV context of a sequence while it decodes: its prompt plus half its output."""
        return float((self.prompts + self.outputs / 2).mean())


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class PrefillProfile:
    latency: np.ndarray
    """Prefill latency of each sampled request alone on the replica (s)."""
    service_mean: float
    service_sq: float
    rate_cap: float
    """SLO-feasible arrival rate (req/s)."""

    def wait(self, rate: float) -> float:
        """Mean queueing delay at arrival rate `rate` (inf at or past saturation)."""
        rho = rate * self.service_mean
        return math.inf if rho >= 1 else rate * self.service_sq / (2 * (1 - rho))


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class DecodeProfile:
    max_batch: int
    """Sequences that fit in KV memory."""
    rate_cap: float
    """SLO-feasible arrival rate (req/s)."""
    cap_batch: int
    tpot_at_cap: float
    config: ReplicaConfig
    mean_context: float
    mean_output: float

    def tpot(self, cost_model: CostModel, rate: float) -> float:
        """Steady-state TPOT at arrival rate `rate` (inf past the memory-bound capacity)."""
        if rate <= 0:
            return cost_model.decode_step_time(self.config, 1, self.mean_context)
        batch = 1.0
        for _ in range(30):  # fixed point of B = λ·E[out]·TPOT(B); monotone, converges in a few steps
            tpot = cost_model.decode_step_time(self.config, max(1, math.ceil(batch)), self.mean_context)
            new = rate * self.mean_output * tpot
            if new > self.max_batch:
                return math.inf
            if abs(new - batch) < 0.5:
                break
            batch = new
        return tpot


def prefill_profile(cost_model: CostModel, config: ReplicaConfig, sample: WorkloadSample) -> PrefillProfile:
    s = sample.prompts
    load = {"tokens": s, "attn_pairs": s * (s + 1) / 2, "kv_tokens": s, "heads": 1.0}
    last = config.pp - 1
    stages = np.stack([cost_model.stage_cost(st, st.num_layers, first=k == 0, last=k == last, **load)  # type: ignore[arg-type]
                       for k, st in enumerate(config.stages)])
    latency = stages.sum(axis=0) + cost_model.hop_time(config, s)  # type: ignore[arg-type]
    service = stages.max(axis=0)
    mean, sq = float(service.mean()), float((service**2).mean())
    slack = float(np.quantile(sample.slo.ttft_s - latency, 1 - ATTAIN_TARGET))
    rate_cap = 0.0 if slack <= 0 else 2 * slack / (sq + 2 * slack * mean)
    return PrefillProfile(latency=latency, service_mean=mean, service_sq=sq, rate_cap=rate_cap)


def decode_profile(cost_model: CostModel, config: ReplicaConfig, sample: WorkloadSample) -> DecodeProfile:
    ctx = sample.mean_context
    max_batch = int(cost_model.max_kv_tokens(config) * KV_OCCUPANCY / ctx)
    profile = DecodeProfile(max_batch=max(max_batch, 0), rate_cap=0.0, cap_batch=0, tpot_at_cap=math.inf,
                            config=config, mean_context=ctx, mean_output=sample.mean_output)
    if max_batch < 1 or cost_model.decode_step_time(config, 1, ctx) > sample.slo.tpot_s:
        return profile
    lo, hi = 1, max_batch  # largest batch whose TPOT meets the deadline (TPOT grows with the batch)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if cost_model.decode_step_time(config, mid, ctx) <= sample.slo.tpot_s:
            lo = mid
        else:
            hi = mid - 1
    tpot = cost_model.decode_step_time(config, lo, ctx)
    return DecodeProfile(max_batch=max_batch, rate_cap=lo / (tpot * sample.mean_output), cap_batch=lo,
                         tpot_at_cap=tpot, config=config, mean_context=ctx, mean_output=sample.mean_output)


__all__ = ["ATTAIN_TARGET", "DecodeProfile", "PrefillProfile", "WorkloadSample", "decode_profile", "prefill_profile"]
