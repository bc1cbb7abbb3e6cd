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

    def observe(self, stats: DeviceStats, step_s: float, prefill_tokens: int, decode_tokens: int) -> None:
        """Fold in one step report."""
        self.stats = stats
        if prefill_tokens > 0:
            sample = step_s / prefill_tokens
            self.sec_per_prefill_token = _ewma(self.sec_per_prefill_token, sample)
        elif decode_tokens > 0:
            self.decode_step_s = _ewma(self.decode_step_s, step_s)

    def predicted_ttft_s(self, prompt_tokens: int) -> float:
        """Queue + own prefill time if a `prompt_tokens` prompt were admitted now (0 before any sample)."""
        return (self.queued_prompt_tokens + prompt_tokens) * self.sec_per_prefill_token

    def would_miss(self, slo: SloTargets, prompt_tokens: int, *, decoding: bool) -> bool:
        """True when one more request here is predicted to miss the TTFT (prefill) or TPOT (decode) SLO."""
        if self.draining:
            return True
        if not decoding:
            return self.predicted_ttft_s(prompt_tokens) > slo.ttft_s
        s = self.stats
        if s is not None and (self.active >= s.max_num_seqs or s.kv_cache_usage > slo.kv_high_water):
            return True
        return self.decode_step_s > slo.tpot_s

    def score(self, prompt_tokens: int, *, decoding: bool) -> float:
        """Lower is better; breaks ties when every replica is predicted to miss."""
        if not decoding:
            return self.predicted_ttft_s(prompt_tokens) + 1e-9 * self.queued_prompt_tokens
        return self.decode_step_s * (1 + self.active) + 1e-9 * self.active


def least_loaded(loads: Iterable[ReplicaLoad], prompt_tokens: int, *, decoding: bool) -> ReplicaLoad | None:
    live = [x for x in loads if not x.draining]
    return min(live, key=lambda x: x.score(prompt_tokens, decoding=decoding), default=None)


def _ewma(old: float, sample: float) -> float:
    return sample if old == 0.0 else (1 - EWMA) * old + EWMA * sample
