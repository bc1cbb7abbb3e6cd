"""Queueing formulas the analytic estimate uses: M/G/1 (prefill replicas, KV links), M/M/c (decode KV slots),
their waiting-time tails, and convex piecewise-linear curves for the routing LP.

Tails use the exponential approximation of a waiting time with an atom at zero: W = 0 with probability 1 − p,
otherwise ~ Exp(θ). For M/G/1 (Pollaczek–Khinchine mean E[W] = ρ·E[R]/(1−ρ), mean residual E[R] = E[S²]/2E[S]):
    p = ρ, θ = (1 − ρ)/E[R]           →  P(W > t) ≈ ρ·exp(−(1 − ρ)·t / E[R])
(exact for M/M/1, the standard heavy-traffic form otherwise). For M/M/c: p = Erlang C, θ = (c − a)/E[S] (exact).

Arrivals smoother than Poisson (squared coefficient of variation of the inter-arrival time c_a² < 1) wait less:
Kingman's G/G/1 form replaces the mean residual E[S](1 + c_s²)/2 by E[S](c_a² + c_s²)/2 (same for c_a² = 1).
A replica that gets every k-th arrival of a Poisson stream (round-robin routing, share w = 1/k) sees Erlang-k
inter-arrival times, c_a² = 1/k = w (`split_arrival_cv2`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaincc


@dataclass(frozen=True, slots=True)
class WaitTail:
    """A waiting time that is 0 with probability 1 − `p` and otherwise exponential with rate `theta` (1/s).

    `p` = 1 with `theta` = 0 is a saturated queue (the wait exceeds every deadline)."""

    p: float
    theta: float

    @property
    def mean(self) -> float:
        return math.inf if self.theta <= 0 and self.p > 0 else (self.p / self.theta if self.p > 0 else 0.0)

    def exceeds(self, t: np.ndarray | float) -> np.ndarray:
        """P(W > t) for each t (seconds); t < 0 gives 1."""
        t = np.asarray(t, dtype=np.float64)
        if self.p <= 0:
            return np.where(t < 0, 1.0, 0.0)
        if self.theta <= 0:
            return np.ones_like(t)
        return np.where(t < 0, 1.0, self.p * np.exp(-self.theta * np.maximum(t, 0.0)))


NO_WAIT = WaitTail(0.0, math.inf)
SATURATED = WaitTail(1.0, 0.0)


def mg1_wait(rate: float, mean_s: float, sq_s: float) -> WaitTail:
    """Waiting time of an M/G/1 queue: arrivals `rate`/s, service time with mean `mean_s` and E[S²] = `sq_s`."""
    if rate <= 0 or mean_s <= 0:
        return NO_WAIT
    rho = rate * mean_s
    if rho >= 1:
        return SATURATED
    residual = sq_s / (2 * mean_s)
    return WaitTail(rho, (1 - rho) / residual)


def split_arrival_cv2(share: float | np.ndarray) -> np.ndarray:
    """c_a² of the arrivals a replica gets when a router deals it a `share` of a Poisson stream in turn (smooth
    weighted round-robin, as the simulator and a load balancer do): every K-th arrival, K ∈ {⌊1/w⌋, ⌈1/w⌉} with
    mean 1/w, so c_a² = (E[K] + Var K)/E[K]² = w + w²·f(1 − f), f = frac(1/w) (Erlang-k gaps, c_a² = 1/k, when
    1/w = k). (Random splitting would keep c_a² = 1; a round-robin over very uneven weights can be a little
    burstier than this.)"""
    w = np.clip(np.asarray(share, dtype=np.float64), 1e-9, 1.0)
    f = 1.0 / w - np.floor(1.0 / w)
    return w + w**2 * f * (1.0 - f)


def erlang_c(servers: int, load: float) -> float:
    """Probability that an arrival waits in an M/M/c queue with `servers` and offered `load` = λ·E[S] (Erlangs)."""
    if load <= 0:
        return 0.0
    if servers <= 0 or load >= servers:
        return 1.0
    # Erlang B = P(N = c) / P(N <= c) for N ~ Poisson(load) (closed form, no loop over the servers), then C from B
    blocking = math.exp(servers * math.log(load) - load - math.lgamma(servers + 1)) / float(gammaincc(servers + 1, load))
    return servers * blocking / (servers - load * (1 - blocking))


def mmc_wait(servers: int, rate: float, service_s: float) -> WaitTail:
    """Waiting time of an M/M/c queue (exact tail): `servers` slots, arrivals `rate`/s, mean holding `service_s`."""
    load = rate * service_s
    if load <= 0:
        return NO_WAIT
    if load >= servers:
        return SATURATED
    return WaitTail(erlang_c(servers, load), (servers - load) / service_s)


def sum_exceeds(a: WaitTail, b: WaitTail, t: np.ndarray) -> np.ndarray:
    """P(A + B > t) for independent waits `a`, `b` (each an atom at 0 plus an exponential)."""
    t = np.asarray(t, dtype=np.float64)
    if a.p <= 0:
        return b.exceeds(t)
    if b.p <= 0:
        return a.exceeds(t)
    if a.theta <= 0 or b.theta <= 0:
        return np.ones_like(t)
    tt = np.maximum(t, 0.0)
    ea, eb = np.exp(-a.theta * tt), np.exp(-b.theta * tt)
    if math.isclose(a.theta, b.theta, rel_tol=1e-6):  # Erlang-2 tail when the rates coincide
        both = ea * (1 + a.theta * tt)
    else:  # hypoexponential tail
        both = (a.theta * eb - b.theta * ea) / (a.theta - b.theta)
    out = a.p * (1 - b.p) * ea + b.p * (1 - a.p) * eb + a.p * b.p * both
    return np.where(t < 0, 1.0, out)


def mg1_wait_arrays(rate: np.ndarray | float, mean_s: np.ndarray | float,
                    sq_s: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """`mg1_wait` element-wise: (p, theta) arrays of the waits of many M/G/1 queues (same shapes as the inputs)."""
    rate, mean_s, sq_s = np.broadcast_arrays(*(np.asarray(x, dtype=np.float64) for x in (rate, mean_s, sq_s)))
    idle = (rate <= 0) | (mean_s <= 0)
    rho = rate * mean_s
    full = ~idle & (rho >= 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = (1 - rho) / (sq_s / (2 * mean_s))
    p = np.where(idle, NO_WAIT.p, np.where(full, SATURATED.p, rho))
    return p, np.where(idle, NO_WAIT.theta, np.where(full, SATURATED.theta, theta))


def _exceeds_arrays(p: np.ndarray, theta: np.ndarray, t: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        tail = np.where(t < 0, 1.0, p * np.exp(-theta * np.maximum(t, 0.0)))
    return np.where(p <= 0, np.where(t < 0, 1.0, 0.0), np.where(theta <= 0, 1.0, tail))


def sum_exceeds_arrays(a_p: np.ndarray | float, a_theta: np.ndarray | float, b_p: np.ndarray | float,
                       b_theta: np.ndarray | float, t: np.ndarray | float) -> np.ndarray:
    """`sum_exceeds` element-wise over broadcast arrays: P(A + B > t) with A = (a_p, a_theta), B = (b_p, b_theta).

    Every element takes the branch `sum_exceeds` would take for its own pair of waits, with the same arithmetic."""
    a_p, a_theta, b_p, b_theta, t = np.broadcast_arrays(
        *(np.asarray(x, dtype=np.float64) for x in (a_p, a_theta, b_p, b_theta, t)))
    tt = np.maximum(t, 0.0)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        ea, eb = np.exp(-a_theta * tt), np.exp(-b_theta * tt)
        close = np.abs(a_theta - b_theta) <= 1e-6 * np.maximum(np.abs(a_theta), np.abs(b_theta))
        both = np.where(close, ea * (1 + a_theta * tt), (a_theta * eb - b_theta * ea) / (a_theta - b_theta))
        out = a_p * (1 - b_p) * ea + b_p * (1 - a_p) * eb + a_p * b_p * both
    out = np.where(t < 0, 1.0, out)
    out = np.where((a_theta <= 0) | (b_theta <= 0), 1.0, out)
    out = np.where(b_p <= 0, _exceeds_arrays(a_p, a_theta, t), out)
    return np.where(a_p <= 0, _exceeds_arrays(b_p, b_theta, t), out)


def convex_segments(flows: np.ndarray, totals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(widths, slopes) of the piecewise-linear curve through (flows[..., k], totals[..., k]) along the last axis,
    flows ascending from 0 (leading axes: one curve each).

    NOTE: slopes are made non-decreasing (running maximum), so an LP that fills segments in order of cost sees a
    convex curve even where sampling noise bent it; infinite totals become a very steep last segment."""
    flows = np.asarray(flows, dtype=np.float64)
    totals = np.asarray(totals, dtype=np.float64)
    widths = np.diff(flows, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        slopes = np.diff(totals, axis=-1) / np.where(widths > 0, widths, 1.0)
    finite = slopes[np.isfinite(slopes)]
    cap = 1e3 * (float(np.abs(finite).max()) if finite.size else 1.0) + 1.0
    slopes = np.maximum.accumulate(np.where(np.isfinite(slopes), slopes, cap), axis=-1)
    return widths, slopes


__all__ = ["NO_WAIT", "SATURATED", "WaitTail", "convex_segments", "erlang_c", "mg1_wait", "mg1_wait_arrays", "mmc_wait",
           "split_arrival_cv2", "sum_exceeds", "sum_exceeds_arrays"]
