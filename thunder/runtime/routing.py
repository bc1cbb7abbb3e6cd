"""Routing decisions (pure, no actors): smooth weighted round-robin and per-replica load prediction.

`SmoothWRR` is nginx's smooth weighted round-robin: over any window of Σw picks each replica is chosen in
proportion to its weight, interleaved (no bursts). `ReplicaLoad` keeps what the router knows about one
replica — its outstanding work and step times measured from the reports the devices push every step — and
predicts whether one more request would miss the SLO there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from thunder.runtime.messages import DeviceStats

__all__ = ["ReplicaLoad", "SloTargets", "SmoothWRR", "least_loaded"]

EWMA = 0.2
"""Weight of the newest sample in the step-time averages."""
STALE_HALF_LIFE_S = 2.0
"""An idle replica's measured step time counts half as much after this long without a new measurement."""


class SmoothWRR:
    """Smooth weighted round-robin over named choices with non-negative weights."""

    def __init__(self, weights: Mapping[str, float]) -> None:
        bad = {k: w for k, w in weights.items() if not (w >= 0 and math.isfinite(w))}
        if bad:
            raise ValueError(f"routing weights {bad}: must be finite and >= 0")
        self.weights = dict(weights)
        self._current = dict.fromkeys(self.weights, 0.0)

    def pick(self, eligible: Callable[[str], bool] = lambda _: True) -> str | None:
        """The next choice among those with weight > 0 that `eligible` accepts; None if there is none."""
        best: str | None = None
        total = 0.0
        for name, weight in self.weights.items():
            if weight <= 0 or not eligible(name):
                continue
            self._current[name] += weight
            total += weight
            if best is None or self._current[name] > self._current[best]:
                best = name
        if best is not None:
            self._current[best] -= total
        return best


@dataclass(frozen=True, slots=True, kw_only=True)
class SloTargets:
    ttft_s: float
    tpot_s: float
    kv_high_water: float = 0.95
    """A decode replica whose KV pool is fuller than this takes no new request."""


class ReplicaLoad:
    """The router's view of one replica: outstanding work plus step times measured by the device."""

    def __init__(self, replica: str, role: str) -> None:
        self.replica = replica
        self.role = role
        self.stats: DeviceStats | None = None
        self.queued_prompt_tokens = 0  # admitted here, first token not out yet
        self.active = 0  # requests this replica is generating for (decode / colocated)
        self.sec_per_prefill_token = 0.0
        self.decode_step_s = 0.0
        self.draining = False
        self.prefill_at = 0.0
        self.decode_at = 0.0
        """Loop times of the latest prefill and decode step measurements."""

    def observe(self, stats: DeviceStats, step_s: float, prefill_tokens: int, decode_tokens: int,
                now: float = 0.0) -> None:
        """Fold in one step report (`now`: the loop time it arrived). A measurement that comes after a gap of
        more than `STALE_HALF_LIFE_S` replaces the average instead of joining it (see `_trusted`)."""
        self.stats = stats
        if prefill_tokens > 0:
            self.sec_per_prefill_token = _fold(self.sec_per_prefill_token, self.prefill_at, step_s / prefill_tokens, now)
            self.prefill_at = now
        elif decode_tokens > 0:
            self.decode_step_s = _fold(self.decode_step_s, self.decode_at, step_s, now)
            self.decode_at = now

    def _trusted(self, measured: float, measured_at: float, idle: bool, now: float | None) -> float:
        """`measured` as far as it still holds at loop time `now`.

        NOTE: an idle replica skipped for a predicted miss gets no work, so no new step corrects its measurement:
        one short chunk, whose fixed step cost is spread over a few tokens, rated a PP 4 prefill replica at
        58 ms per token instead of 1.8 and starved it for good. So an idle replica's measurement halves every
        `STALE_HALF_LIFE_S` without a report; it then takes a request and is measured again, like an outlier
        ejection that expires; a measurement after such a gap starts the average afresh (`observe`). A queue, a
        full batch or a full KV pool are facts and do not fade."""
        if now is None or not idle:
            return measured
        return measured * 0.5 ** (max(now - measured_at, 0.0) / STALE_HALF_LIFE_S)

    def predicted_ttft_s(self, prompt_tokens: int, now: float | None = None) -> float:
        """Queue + own prefill time if a `prompt_tokens` prompt were admitted at loop time `now` (0 before any
        sample)."""
        per_token = self._trusted(self.sec_per_prefill_token, self.prefill_at, self.queued_prompt_tokens == 0, now)
        return (self.queued_prompt_tokens + prompt_tokens) * per_token

    def would_miss(self, slo: SloTargets, prompt_tokens: int, *, decoding: bool, now: float | None = None) -> bool:
        """True when one more request here, at loop time `now`, is predicted to miss the TTFT (prefill) or TPOT
        (decode) SLO."""
        if self.draining:
            return True
        if not decoding:
            return self.predicted_ttft_s(prompt_tokens, now) > slo.ttft_s
        s = self.stats
        if s is not None and (self.active >= s.max_num_seqs or s.kv_cache_usage > slo.kv_high_water):
            return True
        return self._trusted(self.decode_step_s, self.decode_at, self.active == 0, now) > slo.tpot_s

    def score(self, prompt_tokens: int, *, decoding: bool) -> float:
        """Lower is better; breaks ties when every replica is predicted to miss."""
        if not decoding:
            return self.predicted_ttft_s(prompt_tokens) + 1e-9 * self.queued_prompt_tokens
        return self.decode_step_s * (1 + self.active) + 1e-9 * self.active


def least_loaded(loads: Iterable[ReplicaLoad], prompt_tokens: int, *, decoding: bool) -> ReplicaLoad | None:
    live = [x for x in loads if not x.draining]
    return min(live, key=lambda x: x.score(prompt_tokens, decoding=decoding), default=None)


def _fold(old: float, old_at: float, sample: float, now: float) -> float:
    """The average after `sample` arrives at `now`: EWMA, started afresh when `old` is 0 (no sample yet) or older
    than `STALE_HALF_LIFE_S` (measured at `old_at`)."""
    if old == 0.0 or now - old_at > STALE_HALF_LIFE_S:
        return sample
    return (1 - EWMA) * old + EWMA * sample
