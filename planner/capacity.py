"""Per-replica service profiles: latency per request, tail-aware SLO-feasible capacity, load-dependent decode TPOT.

These are the analytical (queueing) pieces the search, the routing LP and re-planning score plans with
(formulas in `queueing.py`). Every capacity is sized on the *tail*, not the mean: the largest arrival rate at
which `COMPONENT_TARGET` of the sampled requests still meet the deadline.

Prefill replica: M/G/1 queue whose service time is the pipeline's bottleneck-stage time per request;
    P(TTFT_r <= D) = 1 − P(W > D − latency_r),   P(W > t) ≈ ρ·exp(−(1 − ρ)·t / E[residual]).
Decode replica: continuous batching with B sequences resident; by Little's law B = λ·E[out]·TPOT(B). Each resident
sequence holds its prompt + output KV (the simulator and a reserving scheduler admit on that), so the KV slots
are c = KV tokens / E[(prompt + out)·out] / E[out] (time-weighted: long outputs hold KV longer). Admission waits
for a free slot like an M/M/c queue (Erlang C); that wait delays the second token, so per request
    P(TPOT_r <= D) = P(kv wait <= (D − TPOT(B))·(out_r − 1)).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from planner.config import ReplicaConfig
from planner.cost_model import CostModel
from planner.queueing import WaitTail, mg1_wait, mmc_wait
from planner.workload import SLO, Workload

ATTAIN_TARGET = 0.9
"""The SLO-attainment target plans are judged by (share of requests meeting both deadlines)."""
COMPONENT_TARGET = 0.95
"""Share of requests one queue (prefill, decode) may keep within its deadline at its capacity: the misses of the
prefill and the decode side add up, so each is sized tighter than `ATTAIN_TARGET`."""
SAMPLE_SIZE = 256
KV_OCCUPANCY = 0.97
"""Share of a decode replica's KV memory usable for resident sequences (page rounding: half a 16-token page per
sequence is ~1 % of a 1k-token context). Queueing for memory is modelled explicitly (M/M/c), not by this margin."""
MAX_RESIDENT_SEQUENCES = 256
"""Sequences a replica decodes together at most (vLLM max_num_seqs; the simulator uses the same limit)."""


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

    @property
    def resident_kv_tokens(self) -> float:
        """KV tokens one resident decoding sequence holds, time-weighted: E[(prompt + out)·out] / E[out]."""
        return float(((self.prompts + self.outputs) * self.outputs).sum() / self.outputs.sum())

    @property
    def steps(self) -> np.ndarray:
        """Decode steps after the first token, per request (>= 1; TPOT divides by it)."""
        return np.maximum(self.outputs - 1, 1)


def _largest_rate(hit_share: Callable[[float], float], hi: float, target: float) -> float:
    """The largest rate in (0, hi) with hit_share(rate) >= target (hit_share falls with the rate); 0 if none."""
    if hi <= 0 or hit_share(hi * 1e-6) < target:
        return 0.0
    lo = hi * 1e-6
    for _ in range(40):
        mid = (lo + hi) / 2
        if hit_share(mid) >= target:
            lo = mid
        else:
            hi = mid
        if hi - lo < 2e-3 * hi:
            break
    return lo


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class PrefillProfile:
    latency: np.ndarray
    """Prefill latency of each sampled request alone on the replica (s)."""
    service_mean: float
    service_sq: float
    rate_cap: float
    """SLO-feasible arrival rate (req/s): `COMPONENT_TARGET` of requests meet the TTFT deadline."""
    deadline_s: float = math.inf

    def wait(self, rate: float) -> float:
        """Mean queueing delay at arrival rate `rate` (inf at or past saturation)."""
        return self.wait_tail(rate).mean

    def wait_tail(self, rate: float) -> WaitTail:
        return mg1_wait(rate, self.service_mean, self.service_sq)

    def hit(self, rate: float) -> np.ndarray:
        """float[n]: P(TTFT <= deadline) of each sampled request at arrival rate `rate`."""
        return 1.0 - self.wait_tail(rate).exceeds(self.deadline_s - self.latency)


def prefill_profile(cost_model: CostModel, config: ReplicaConfig, sample: WorkloadSample) -> PrefillProfile:
    s = sample.prompts
    load = {"tokens": s, "attn_pairs": s * (s + 1) / 2, "kv_tokens": s, "heads": 1.0}
    last = config.pp - 1
    stages = np.stack([cost_model.stage_cost(st, st.num_layers, first=k == 0, last=k == last, **load)  # type: ignore[arg-type]
                       for k, st in enumerate(config.stages)])
    latency = stages.sum(axis=0) + cost_model.hop_time(config, s)  # type: ignore[arg-type]
    service = stages.max(axis=0)
    mean, sq = float(service.mean()), float((service**2).mean())
    draft = PrefillProfile(latency=latency, service_mean=mean, service_sq=sq, rate_cap=0.0,
                           deadline_s=sample.slo.ttft_s)
    cap = _largest_rate(lambda r: float(draft.hit(r).mean()), 1.0 / mean, COMPONENT_TARGET)
    return PrefillProfile(latency=latency, service_mean=mean, service_sq=sq, rate_cap=cap,
                          deadline_s=sample.slo.ttft_s)


TPOT_GRID_POINTS = 10
"""Batch sizes at which a decode profile tabulates the cost model's step time (log-spaced, interpolated between)."""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class DecodeProfile:
    max_batch: int
    """Sequences that fit in KV memory at once (the M/M/c slots)."""
    rate_cap: float
    """SLO-feasible arrival rate (req/s): `COMPONENT_TARGET` of requests meet the TPOT deadline (no handoff)."""
    cap_batch: int
    tpot_at_cap: float
    config: ReplicaConfig
    mean_context: float
    mean_output: float
    steps: np.ndarray | None = None
    deadline_s: float = math.inf
    batch_grid: np.ndarray | None = None
    """Batch sizes 1..max_batch where `tpot_grid` holds the cost model's decode step time."""
    tpot_grid: np.ndarray | None = None

    def tpot(self, cost_model: CostModel, rate: float) -> float:
        """Steady-state TPOT at arrival rate `rate` (inf when the mean batch would not fit in KV memory): the
        fixed point of Little's law B = λ·E[out]·TPOT(B), solved on the tabulated step times."""
        if self.batch_grid is None or self.tpot_grid is None:
            return cost_model.decode_step_time(self.config, 1, self.mean_context) if rate <= 0 else math.inf
        if rate <= 0:
            return float(self.tpot_grid[0])
        tokens_per_s = np.maximum.accumulate(self.batch_grid / self.tpot_grid)
        need = rate * self.mean_output
        if need >= tokens_per_s[-1]:
            return math.inf
        batch = float(np.interp(need, tokens_per_s, self.batch_grid))
        return float(np.interp(max(batch, 1.0), self.batch_grid, self.tpot_grid))

    def kv_wait_tail(self, rate: float, tpot: float) -> WaitTail:
        """Wait for a KV slot (M/M/c, c = `max_batch`, holding time E[out]·TPOT) at arrival rate `rate`."""
        return mmc_wait(self.max_batch, rate, self.mean_output * tpot)

    def hit(self, cost_model: CostModel, rate: float) -> np.ndarray:
        """float[n]: P(TPOT <= deadline) of each sampled request at `rate`, before any KV handoff delay."""
        assert self.steps is not None
        tpot = self.tpot(cost_model, rate)
        if not math.isfinite(tpot) or tpot > self.deadline_s:
            return np.zeros(self.steps.size)
        return 1.0 - self.kv_wait_tail(rate, tpot).exceeds((self.deadline_s - tpot) * self.steps)


def decode_profile(cost_model: CostModel, config: ReplicaConfig, sample: WorkloadSample) -> DecodeProfile:
    ctx = sample.mean_context
    slots = int(cost_model.max_kv_tokens(config) * KV_OCCUPANCY / sample.resident_kv_tokens)
    max_batch = max(min(slots, MAX_RESIDENT_SEQUENCES), 0)
    base = {"config": config, "mean_context": ctx, "mean_output": sample.mean_output, "steps": sample.steps,
            "deadline_s": sample.slo.tpot_s, "max_batch": max_batch}
    if max_batch < 1 or cost_model.decode_step_time(config, 1, ctx) > sample.slo.tpot_s:
        return DecodeProfile(rate_cap=0.0, cap_batch=0, tpot_at_cap=math.inf, **base)  # type: ignore[arg-type]
    grid = np.unique(np.geomspace(1, max_batch, TPOT_GRID_POINTS).round().astype(np.int64)).astype(np.float64)
    tpots = np.array([cost_model.decode_step_time(config, int(b), ctx) for b in grid])
    draft = DecodeProfile(rate_cap=0.0, cap_batch=0, tpot_at_cap=math.inf, batch_grid=grid, tpot_grid=tpots,
                          **base)  # type: ignore[arg-type]
    saturation = max_batch / (sample.mean_output * float(tpots[-1]))
    cap = _largest_rate(lambda r: float(draft.hit(cost_model, r).mean()), saturation, COMPONENT_TARGET)
    tpot = draft.tpot(cost_model, cap) if cap > 0 else math.inf
    batch = int(math.ceil(cap * sample.mean_output * tpot)) if math.isfinite(tpot) else 0
    return DecodeProfile(rate_cap=cap, cap_batch=batch, tpot_at_cap=tpot, batch_grid=grid, tpot_grid=tpots,
                         **base)  # type: ignore[arg-type]


__all__ = ["ATTAIN_TARGET", "COMPONENT_TARGET", "DecodeProfile", "KV_OCCUPANCY", "MAX_RESIDENT_SEQUENCES",
           "PrefillProfile", "WorkloadSample", "decode_profile", "prefill_profile"]
