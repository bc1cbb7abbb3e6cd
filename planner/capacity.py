"""Per-replica service profiles: latency per request, tail-aware SLO-feasible capacity, load-dependent decode TPOT.

These are the analytical (queueing) pieces the search, the routing LP and re-planning score plans with
(formulas in `queueing.py`). Every capacity is sized on the *tail*, not the mean: the largest arrival rate at
which `COMPONENT_TARGET` of the sampled requests still meet the deadline.

Prefill replica: G/G/1 queue whose service time is the pipeline's bottleneck-stage time per request;
    P(TTFT_r <= D) = 1 − P(W > D − latency_r),   P(W > t) ≈ ρ·exp(−(1 − ρ)·t / E[residual]),
E[residual] = E[S](c_a² + c_s²)/2 (Kingman): a replica dealt a share of the arrivals in turn sees smoother than
Poisson arrivals (c_a² ≈ its share), so `rate_cap` (Poisson) is the floor and `capacity(c_a²)` the capacity in a
plan.
Decode replica: continuous batching with B sequences resident; by Little's law B = λ·E[out]·TPOT(B). Each resident
sequence holds its prompt + output KV (the simulator and a reserving scheduler admit on that), so the KV slots
are c = KV tokens / E[(prompt + out)·out] / E[out] (time-weighted: long outputs hold KV longer). Admission waits
for a free slot like an M/M/c queue (Erlang C); that wait delays the second token, so per request
    P(TPOT_r <= D) = P(kv wait <= (D − TPOT(B))·(out_r − 1)).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from planner.config import ReplicaConfig
from planner.cost_model import CostModel
from planner.queueing import NO_WAIT, SATURATED, WaitTail, mmc_wait
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
    """A fixed, seeded sample of (prompt, output) lengths used for every analytical estimate of one search.

    The per-request tails (who meets a deadline) are taken over the sample; the means a capacity rests on
    (`mean_output`, `mean_context`, `resident_kv_tokens`) over `population` when given — every request of the
    trace — because a few hundred draws of a heavy-tailed output length miss them by up to 30 % (coding: the
    KV token-steps E[(prompt + out)·out] of a 256-draw sample range over 0.75-1.05x the trace's)."""

    prompts: np.ndarray
    outputs: np.ndarray
    rate: float
    slo: SLO
    population: tuple[np.ndarray, np.ndarray] | None = None
    """(prompts, outputs) of every request the sample stands for; None: the sample itself."""
    mean_output: float = field(init=False)
    mean_context: float = field(init=False)
    """Mean KV context a decode step reads per resident sequence: prompt plus half the output, weighted by the
    steps the sequence is resident, E[(prompt + out/2)·out] / E[out]. (A step sees long-output sequences for
    longer; the unweighted E[prompt + out/2] under-counts the context — and the KV read, which dominates a
    large decode step — by ≈ 10 % on conversation.)"""
    resident_kv_tokens: float = field(init=False)
    """KV tokens one resident decoding sequence holds, time-weighted: E[(prompt + out)·out] / E[out]."""

    def __post_init__(self) -> None:
        p, o = self.population if self.population is not None else (self.prompts, self.outputs)
        p, o = np.asarray(p, dtype=np.float64), np.asarray(o, dtype=np.float64)
        total = float(o.sum())
        object.__setattr__(self, "mean_output", float(o.mean()))
        object.__setattr__(self, "mean_context", float(((p + o / 2) * o).sum() / total))
        object.__setattr__(self, "resident_kv_tokens", float(((p + o) * o).sum() / total))

    @classmethod
    def of(cls, workload: Workload, n: int = SAMPLE_SIZE, seed: int = 0) -> WorkloadSample:
        """`n` requests stratified on their KV token-steps (prompt + out)·out — one seeded draw from each of `n`
        equal-count strata of the trace sorted by it — so the sample's decode load is representative; the means
        are the whole trace's."""
        prompts, outputs = workload.prompt_lens, workload.output_lens
        order = np.argsort((prompts + outputs) * outputs.astype(np.int64), kind="stable")
        edges = np.linspace(0, order.size, n + 1)
        picks = order[(edges[:-1] + np.random.default_rng(seed).random(n) * np.diff(edges)).astype(np.int64)]
        return cls(prompts=prompts[picks].astype(np.float64), outputs=outputs[picks].astype(np.float64),
                   rate=workload.rate, slo=workload.effective_slo, population=(prompts, outputs))

    @property
    def steps(self) -> np.ndarray:
        """Decode steps after the first token, per request (>= 1; TPOT divides by it)."""
        return np.maximum(self.outputs - 1, 1)


def _largest_rate(hit_share: Callable[[float], float], hi: float, target: float, lo: float = 0.0) -> float:
    """The largest rate in (lo, hi) with hit_share(rate) >= target (hit_share falls with the rate); 0 if none.
    `lo`: a rate known to meet the target (0: none known)."""
    lo = max(lo, hi * 1e-6)
    if hi <= 0 or hit_share(lo) < target:
        return 0.0
    for _ in range(40):
        mid = (lo + hi) / 2
        if hit_share(mid) >= target:
            lo = mid
        else:
            hi = mid
        if hi - lo < 2e-3 * hi:
            break
    return lo


PREFILL_BATCH_TOKENS = 2048
"""Prompt tokens a prefill replica batches per pass at most (vLLM max_num_batched_tokens; the simulator's default)."""
PREFILL_GRID_POINTS = 12
"""Batch sizes (in tokens) at which a prefill profile tabulates the cost model's pass time."""
ARRIVAL_CV2_STEP = 0.125
"""Grid step of the arrival c_a² at which a prefill profile solves its capacity (lazily; linear in between)."""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class PrefillProfile:
    """A prefill replica that batches waiting prompts under a token budget (as the simulator and vLLM do).

    At arrival rate λ the batch holds the prompts that arrive during one pass: n tokens with
    n = max(E[p], λ·E[p]·T(n)) (fixed point, capped at `batch_tokens`), T(n) = the pipeline's issue interval for
    n tokens. The wait before a request's pass is in `wait_tail`; its own pass is its prompt plus the batch's other
    n − E[p] tokens."""

    latency: np.ndarray
    """Prefill latency of each sampled request alone on the replica (s)."""
    service_mean: float
    """Mean issue interval of one prompt alone (s)."""
    service_sq: float
    rate_cap: float
    """SLO-feasible arrival rate (req/s): `COMPONENT_TARGET` of requests meet the TTFT deadline."""
    deadline_s: float = math.inf
    mean_prompt: float = 1.0
    batch_tokens: float = PREFILL_BATCH_TOKENS
    token_grid: np.ndarray | None = None
    """float[G]: batch sizes in tokens (ascending, from `mean_prompt`)."""
    interval_grid: np.ndarray | None = None
    """float[G]: issue interval of a batch of `token_grid` tokens of mean-shaped prompts (s)."""
    extra_grid: np.ndarray | None = None
    """float[E]: tokens of other prompts sharing a request's pass."""
    latency_grid: np.ndarray | None = None
    """float[E, n]: latency of each sampled request's pass with `extra_grid` other tokens (s)."""
    _capacity: dict[int, float] = field(default_factory=dict, init=False, repr=False)
    """Capacity per `ARRIVAL_CV2_STEP` grid point of c_a², solved on first use."""

    def batch(self, rate: float) -> tuple[float, float]:
        """(tokens per pass n, issue interval T(n)) at arrival rate `rate`: the fixed point, capped at the budget."""
        assert self.token_grid is not None and self.interval_grid is not None
        grid, interval = self.token_grid, self.interval_grid
        gap = rate * self.mean_prompt * interval - grid  # > 0 where a pass of that size is too small
        if gap[0] <= 0:
            return float(grid[0]), float(interval[0])
        below = np.flatnonzero(gap <= 0)
        if below.size == 0:
            return float(grid[-1]), float(interval[-1])
        hi = int(below[0])  # T is linear between grid points: the crossing solves the fixed point exactly there
        w = gap[hi - 1] / (gap[hi - 1] - gap[hi])
        n = float(grid[hi - 1] + w * (grid[hi] - grid[hi - 1]))
        return n, self._interval(n)

    def _interval(self, tokens: float) -> float:
        assert self.token_grid is not None and self.interval_grid is not None
        return float(np.interp(tokens, self.token_grid, self.interval_grid))

    def wait_tail(self, rate: float, arrival_cv2: float = 1.0) -> tuple[WaitTail, float]:
        """(queueing delay before a request's pass starts, tokens per pass) at arrival rate `rate`, arrivals with
        inter-arrival c_a² = `arrival_cv2` (1: Poisson).

        G/G/1 form with batches: P(W > t) ≈ busy·exp(−(1 − ρ_B)·t / E[R]); busy = share of time a pass is under
        way, E[R] = T(n)/2·(c_a² + cv²/k) (Kingman; k prompts per pass, cv² of one prompt's pass time),
        ρ_B = λ·E[p]·T(B)/B the load on full-budget passes. With a one-prompt budget this is the per-prompt G/G/1;
        with a budget of many short prompts the wait is about one residual pass until the budget fills."""
        if rate <= 0:
            return NO_WAIT, self.mean_prompt
        n, interval = self.batch(rate)
        k = n / self.mean_prompt
        busy = min(1.0, rate * interval / k)
        full = float(self.token_grid[-1])  # type: ignore[index]
        rho_full = rate * self.mean_prompt * self._interval(full) / full
        if rho_full >= 1:
            return SATURATED, n
        cv2 = max(self.service_sq / self.service_mean**2 - 1.0, 0.0)
        residual = interval / 2 * (arrival_cv2 + cv2 / k)
        return WaitTail(busy, (1.0 - rho_full) / residual), n

    @property
    def saturation_rate(self) -> float:
        """Arrival rate (req/s) at which full-budget passes run back to back: no capacity lies above it."""
        assert self.interval_grid is not None
        return self.batch_tokens / (self.mean_prompt * float(self.interval_grid[-1]))

    def wait(self, rate: float, arrival_cv2: float = 1.0) -> float:
        """Mean queueing delay at arrival rate `rate` (inf at or past saturation)."""
        return self.wait_tail(rate, arrival_cv2)[0].mean

    def pass_latency(self, rate: float) -> np.ndarray:
        """float[n]: latency of each sampled request's own (batched) pass at arrival rate `rate` (s)."""
        if self.extra_grid is None or self.latency_grid is None or rate <= 0:
            return self.latency
        return self._latency_in_pass(self.batch(rate)[0])

    def _latency_in_pass(self, n: float) -> np.ndarray:
        """float[n]: latency of each sampled request's pass when the pass holds `n` tokens (s)."""
        assert self.extra_grid is not None and self.latency_grid is not None
        extra = min(n - self.mean_prompt, float(self.extra_grid[-1]))
        hi = int(np.clip(np.searchsorted(self.extra_grid, extra), 1, self.extra_grid.size - 1))
        lo_e, hi_e = self.extra_grid[hi - 1], self.extra_grid[hi]
        w = (extra - lo_e) / (hi_e - lo_e) if hi_e > lo_e else 0.0
        return (1 - w) * self.latency_grid[hi - 1] + w * self.latency_grid[hi]

    def hit(self, rate: float, arrival_cv2: float = 1.0) -> np.ndarray:
        """float[n]: P(TTFT <= deadline) of each sampled request at arrival rate `rate` (arrival c_a²)."""
        if self.extra_grid is None or self.latency_grid is None or rate <= 0:
            return 1.0 - self.wait_tail(rate, arrival_cv2)[0].exceeds(self.deadline_s - self.latency)
        tail, tokens = self.wait_tail(rate, arrival_cv2)
        return 1.0 - tail.exceeds(self.deadline_s - self._latency_in_pass(tokens))

    def capacity(self, arrival_cv2: float) -> float:
        """SLO-feasible arrival rate when the arrivals have c_a² = `arrival_cv2` (`rate_cap` at 1, more below)."""
        x = min(max(arrival_cv2, 0.0), 1.0) / ARRIVAL_CV2_STEP
        lo = int(math.floor(x))
        w = x - lo
        at_lo = self._capacity_at(lo)
        return at_lo if w < 1e-9 else (1 - w) * at_lo + w * self._capacity_at(lo + 1)

    def _capacity_at(self, point: int) -> float:
        cv2 = point * ARRIVAL_CV2_STEP
        if cv2 >= 1.0 or self.rate_cap <= 0:
            return self.rate_cap
        if point not in self._capacity:  # NOTE: smoother arrivals never lower the capacity: rate_cap brackets it
            self._capacity[point] = _largest_rate(lambda r: float(self.hit(r, cv2).mean()), self.saturation_rate,
                                                  COMPONENT_TARGET, lo=self.rate_cap)
        return self._capacity[point]


def prefill_profile(cost_model: CostModel, config: ReplicaConfig, sample: WorkloadSample,
                    batch_tokens: float = PREFILL_BATCH_TOKENS) -> PrefillProfile:
    s = sample.prompts
    mean_p = float(s.mean())
    pairs_per_token = float((s * (s + 1) / 2).mean()) / mean_p
    last = config.pp - 1

    def stages(tokens: np.ndarray, pairs: np.ndarray, heads: np.ndarray) -> np.ndarray:
        return np.stack([cost_model.stage_cost(st, st.num_layers, first=k == 0, last=k == last, tokens=tokens,
                                               attn_pairs=pairs, kv_tokens=tokens, heads=heads)
                         for k, st in enumerate(config.stages)])

    solo = stages(s, s * (s + 1) / 2, np.ones_like(s))
    latency = solo.sum(axis=0) + cost_model.hop_time(config, s)  # type: ignore[arg-type]
    service = solo.max(axis=0)
    full = max(float(batch_tokens), mean_p)
    tokens = np.unique(np.geomspace(mean_p, full, PREFILL_GRID_POINTS))
    interval = stages(tokens, tokens * pairs_per_token, tokens / mean_p).max(axis=0)
    extra = np.concatenate([[0.0], np.geomspace(min(mean_p, full - mean_p) or 1.0, max(full - mean_p, 1.0),
                                                PREFILL_GRID_POINTS - 1)])
    extra = np.unique(extra)
    e = extra[:, None]
    tok = s[None, :] + e
    lat_grid = stages(tok, s * (s + 1) / 2 + e * pairs_per_token, 1 + e / mean_p).sum(axis=0) + \
        cost_model.hop_time(config, tok)  # type: ignore[arg-type]
    base = {"latency": latency, "service_mean": float(service.mean()), "service_sq": float((service**2).mean()),
            "deadline_s": sample.slo.ttft_s, "mean_prompt": mean_p, "batch_tokens": full, "token_grid": tokens,
            "interval_grid": interval, "extra_grid": extra, "latency_grid": lat_grid}
    draft = PrefillProfile(rate_cap=0.0, **base)  # type: ignore[arg-type]
    cap = _largest_rate(lambda r: float(draft.hit(r).mean()), draft.saturation_rate, COMPONENT_TARGET)
    return PrefillProfile(rate_cap=cap, **base)  # type: ignore[arg-type]


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
    tpots = cost_model.decode_step_times(config, grid.astype(np.int64), ctx)
    draft = DecodeProfile(rate_cap=0.0, cap_batch=0, tpot_at_cap=math.inf, batch_grid=grid, tpot_grid=tpots,
                          **base)  # type: ignore[arg-type]
    saturation = max_batch / (sample.mean_output * float(tpots[-1]))
    cap = _largest_rate(lambda r: float(draft.hit(cost_model, r).mean()), saturation, COMPONENT_TARGET)
    tpot = draft.tpot(cost_model, cap) if cap > 0 else math.inf
    batch = int(math.ceil(cap * sample.mean_output * tpot)) if math.isfinite(tpot) else 0
    return DecodeProfile(rate_cap=cap, cap_batch=batch, tpot_at_cap=tpot, batch_grid=grid, tpot_grid=tpots,
                         **base)  # type: ignore[arg-type]


__all__ = ["ATTAIN_TARGET", "COMPONENT_TARGET", "DecodeProfile", "KV_OCCUPANCY", "MAX_RESIDENT_SEQUENCES",
           "PREFILL_BATCH_TOKENS", "PrefillProfile", "WorkloadSample", "decode_profile", "prefill_profile"]
