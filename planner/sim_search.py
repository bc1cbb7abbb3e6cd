"""Searches on top of the simulator: the highest rate that keeps SLO attainment ≥ target (DistServe goodput).

`run(rate)` is any function that simulates a fixed system at `rate` req/s and returns a `SimResult`; callers use
common random numbers (the same seed for every rate and every system), so comparisons are paired.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from planner.sim_metrics import SimResult


@dataclass(frozen=True, slots=True, kw_only=True)
class RateSearchResult:
    """The best rate found and the run at that rate (None when even `min_rate` misses the target)."""

    rate: float
    result: SimResult | None
    runs: int

    @property
    def output_tokens_per_s(self) -> float:
        return self.result.output_tokens_per_s if self.result is not None else 0.0

    @property
    def total_tokens_per_s(self) -> float:
        return self.result.total_tokens_per_s if self.result is not None else 0.0


def max_rate_at_attainment(
    run: Callable[[float], SimResult],
    *,
    ttft_slo_s: float,
    tpot_slo_s: float,
    scale: float = 1.0,
    target: float = 0.9,
    guess: float = 1.0,
    min_rate: float = 1e-3,
    rel_tol: float = 0.03,
    max_runs: int = 30,
    warmup: float = 0.0,
) -> RateSearchResult:
    """Bracket then bisect the rate: the largest tested rate whose attainment is ≥ `target`.

    Attainment falls with rate (more queueing), so bisection applies; `rel_tol` is the final (hi − lo) / hi.
    warmup: attainment counts only requests after this share of arrivals (`SimResult.after_warmup`).
    """
    runs = 0

    def ok(rate: float) -> tuple[bool, SimResult]:
        nonlocal runs
        runs += 1
        res = run(rate)
        return res.after_warmup(warmup).attainment(ttft_slo_s, tpot_slo_s, scale) >= target, res

    rate = max(guess, min_rate)
    good, res = ok(rate)
    best: tuple[float, SimResult | None] = (rate, res) if good else (0.0, None)
    if good:  # grow until it fails
        lo, hi = rate, rate * 2
        while runs < max_runs:
            good, res = ok(hi)
            if not good:
                break
            best = (hi, res)
            lo, hi = hi, hi * 2
    else:  # shrink until it passes
        lo, hi = rate / 2, rate
        while lo >= min_rate and runs < max_runs:
            good, res = ok(lo)
            if good:
                best = (lo, res)
                break
            lo, hi = lo / 2, lo
        else:
            return RateSearchResult(rate=0.0, result=None, runs=runs)
    while (hi - lo) / hi > rel_tol and runs < max_runs:
        mid = (lo + hi) / 2
        good, res = ok(mid)
        if good:
            lo, best = mid, (mid, res)
        else:
            hi = mid
    return RateSearchResult(rate=best[0], result=best[1], runs=runs)


__all__ = ["RateSearchResult", "max_rate_at_attainment"]
