"""Simulation results: per-request TTFT/TPOT/E2E, SLO attainment (DistServe), throughput, goodput, cost.

Conventions (serving-anchors §6.1, §6.3): TTFT = arrival → first token; TPOT = (E2E − TTFT) / (output − 1), 0 for
single-token outputs; a request attains the SLO when TTFT ≤ scale·TTFT_SLO **and** TPOT ≤ scale·TPOT_SLO.
A request that never finished (could not fit anywhere) has infinite latencies and misses every SLO.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True, kw_only=True)
class SimResult:
    """Per-request timestamps of one simulation run. All arrays have shape [N], times in seconds."""

    arrival_s: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    cost_per_hour: float = 0.0

    @property
    def n(self) -> int:
        return len(self.arrival_s)

    def after_warmup(self, warmup: float) -> SimResult:
        """The requests arriving after the first `warmup` share of arrivals (0 <= warmup < 1), for steady-state
        attainment: a run's first requests meet an empty system. Throughput properties of the slice are measured
        over its own arrivals and completions."""
        if not 0.0 <= warmup < 1.0:
            raise ValueError(f"warmup={warmup} must be in [0, 1)")
        k = int(np.floor(warmup * self.n))
        if k == 0:
            return self
        order = np.argsort(self.arrival_s, kind="stable")[k:]
        return SimResult(arrival_s=self.arrival_s[order], first_token_s=self.first_token_s[order],
                         finish_s=self.finish_s[order], prompt_tokens=self.prompt_tokens[order],
                         output_tokens=self.output_tokens[order], cost_per_hour=self.cost_per_hour)

    @property
    def completed(self) -> np.ndarray:
        """bool[N]: the request produced all its tokens."""
        return np.isfinite(self.finish_s)

    @property
    def ttft_s(self) -> np.ndarray:
        return self.first_token_s - self.arrival_s

    @property
    def e2e_s(self) -> np.ndarray:
        return self.finish_s - self.arrival_s

    @property
    def tpot_s(self) -> np.ndarray:
        steps = np.maximum(self.output_tokens - 1, 1)
        with np.errstate(invalid="ignore"):
            tpot = (self.finish_s - self.first_token_s) / steps
        tpot = np.where(self.output_tokens > 1, tpot, 0.0)
        return np.where(self.completed, tpot, np.inf)

    @property
    def duration_s(self) -> float:
        """First arrival → last completion (the window throughput is measured over)."""
        done = self.finish_s[self.completed]
        if self.n == 0 or done.size == 0:
            return 0.0
        return float(max(done.max() - self.arrival_s.min(), 1e-12))

    @property
    def throughput_rps(self) -> float:
        d = self.duration_s
        return float(self.completed.sum() / d) if d > 0 else 0.0

    @property
    def output_tokens_per_s(self) -> float:
        d = self.duration_s
        return float(self.output_tokens[self.completed].sum() / d) if d > 0 else 0.0

    @property
    def total_tokens_per_s(self) -> float:
        d = self.duration_s
        done = self.completed
        return float((self.output_tokens[done].sum() + self.prompt_tokens[done].sum()) / d) if d > 0 else 0.0

    def slo_ratio(self, ttft_slo_s: float, tpot_slo_s: float) -> np.ndarray:
        """float[N]: the smallest SLO scale each request meets, max(TTFT/TTFT_SLO, TPOT/TPOT_SLO)."""
        return np.maximum(self.ttft_s / ttft_slo_s, self.tpot_s / tpot_slo_s)

    def attained(self, ttft_slo_s: float, tpot_slo_s: float, scale: float = 1.0) -> np.ndarray:
        """bool[N]: TTFT and TPOT both within scale × SLO."""
        return self.slo_ratio(ttft_slo_s, tpot_slo_s) <= scale

    def attainment(self, ttft_slo_s: float, tpot_slo_s: float, scale: float = 1.0) -> float:
        """Share of all requests (failed ones count as misses) that meet both SLOs."""
        return float(self.attained(ttft_slo_s, tpot_slo_s, scale).mean()) if self.n else 0.0

    def scale_for_attainment(self, ttft_slo_s: float, tpot_slo_s: float, target: float = 0.9) -> float:
        """The smallest SLO scale at which `target` of requests attain the SLO (inf if too many failed).

        The schedule does not depend on the SLO, so this is an order statistic of `slo_ratio`, not a search.
        """
        ratios = np.sort(self.slo_ratio(ttft_slo_s, tpot_slo_s))
        k = int(np.ceil(target * self.n)) - 1
        return float(ratios[max(k, 0)]) if self.n else float("inf")

    def goodput_rps(self, ttft_slo_s: float, tpot_slo_s: float, scale: float = 1.0) -> float:
        """Requests/s that met both SLOs over the run (vLLM `request_goodput`)."""
        d = self.duration_s
        return float(self.attained(ttft_slo_s, tpot_slo_s, scale).sum() / d) if d > 0 else 0.0

    def summary(self, ttft_slo_s: float, tpot_slo_s: float, scale: float = 1.0) -> dict[str, float]:
        """Headline metrics as a flat dict (means and P90/P99 over completed requests)."""
        done = self.completed
        ttft, tpot, e2e = self.ttft_s[done], self.tpot_s[done], self.e2e_s[done]

        def pct(x: np.ndarray, q: float) -> float:
            return float(np.percentile(x, q)) if x.size else float("nan")

        good = self.goodput_rps(ttft_slo_s, tpot_slo_s, scale)
        return {
            "requests": float(self.n),
            "completed": float(done.sum()),
            "duration_s": self.duration_s,
            "throughput_rps": self.throughput_rps,
            "output_tokens_per_s": self.output_tokens_per_s,
            "total_tokens_per_s": self.total_tokens_per_s,
            "ttft_mean_s": float(ttft.mean()) if ttft.size else float("nan"),
            "ttft_p90_s": pct(ttft, 90),
            "ttft_p99_s": pct(ttft, 99),
            "tpot_mean_s": float(tpot.mean()) if tpot.size else float("nan"),
            "tpot_p90_s": pct(tpot, 90),
            "tpot_p99_s": pct(tpot, 99),
            "e2e_mean_s": float(e2e.mean()) if e2e.size else float("nan"),
            "e2e_p99_s": pct(e2e, 99),
            "slo_attainment": self.attainment(ttft_slo_s, tpot_slo_s, scale),
            "goodput_rps": good,
            "cost_per_hour": self.cost_per_hour,
            "usd_per_1k_good_requests": (self.cost_per_hour / 3.6 / good) if good > 0 else float("inf"),
        }
