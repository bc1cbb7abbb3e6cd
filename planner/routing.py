"""Orchestration: the two-stage transportation LP arrivals -> prefill replicas -> decode replicas (scipy HiGHS).

Flows x_ij >= 0 (req/s from prefill i to decode j) and u >= 0 (unrouted req/s). Each resource — prefill replica i
(load y_i = Σ_j x_ij), decode replica j (load z_j = Σ_i x_ij), KV link i→j (load x_ij) — carries a convex
piecewise-linear cost g(load) = load · delay(load), e.g. a queue's 1/(1 − ρ) growth, up to its capacity:
    minimise   Σ_i g_i(y_i) + Σ_j g_j(z_j) + Σ_ij [c_ij x_ij + g_ij(x_ij)] + M·u
    subject to Σ_ij x_ij + u = λ
with c_ij a fixed per-request pairing cost. It stays an LP: every curve is split into segment variables whose
slopes rise, so the solver fills the cheap segments first and load spreads before any queue runs hot. With
flat curves (one zero-slope segment per resource) it is the classic transportation LP: pack the cheapest pairs
up to the capacities. Routing ratios follow from x.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import coo_matrix

from planner.errors import PlanError
from planner.plan import Routing

LINK_UTILISATION = 0.8
"""Share of a link's bandwidth the KV handoff may plan to use."""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Curves:
    """Convex piecewise-linear resource costs: segment widths (req/s) and slopes (cost per req/s), last axis K.

    prefill: (P, K); decode: (D, K); link: (P, D, K). A resource's capacity is the sum of its widths."""

    prefill_widths: np.ndarray
    prefill_slopes: np.ndarray
    decode_widths: np.ndarray
    decode_slopes: np.ndarray
    link_widths: np.ndarray
    link_slopes: np.ndarray

    @classmethod
    def flat(cls, cap_p: np.ndarray, cap_d: np.ndarray, link_cap: np.ndarray) -> Curves:
        """One zero-cost segment per resource: only the capacities constrain."""
        return cls(prefill_widths=np.asarray(cap_p, float)[:, None], prefill_slopes=np.zeros((len(cap_p), 1)),
                   decode_widths=np.asarray(cap_d, float)[:, None], decode_slopes=np.zeros((len(cap_d), 1)),
                   link_widths=np.asarray(link_cap, float)[:, :, None], link_slopes=np.zeros((*link_cap.shape, 1)))


def solve_routing_lp(cap_p: np.ndarray, cap_d: np.ndarray, cost: np.ndarray, link_cap: np.ndarray,
                     rate: float) -> np.ndarray:
    """Flows x (P×D, req/s) of the linear transportation LP (flat curves). Excess arrivals stay unrouted."""
    return solve_convex_routing_lp(Curves.flat(cap_p, cap_d, link_cap), cost, rate)


def solve_convex_routing_lp(curves: Curves, pair_cost: np.ndarray, rate: float) -> np.ndarray:
    """Flows x (P×D, req/s) minimising the convex objective above; arrivals beyond the capacities stay unrouted."""
    n_p, n_d = pair_cost.shape
    kl, kp, kd = curves.link_slopes.shape[2], curves.prefill_slopes.shape[1], curves.decode_slopes.shape[1]
    n_link, n_pre, n_dec = n_p * n_d * kl, n_p * kp, n_d * kd
    n = n_link + n_pre + n_dec + 1
    link_cost = (pair_cost[:, :, None] + curves.link_slopes).ravel()
    c = np.concatenate([link_cost, curves.prefill_slopes.ravel(), curves.decode_slopes.ravel(), [0.0]])
    finite = c[np.isfinite(c)]
    c[-1] = 1e3 * (float(np.abs(finite).max(initial=1.0)) * 3 + 1.0)  # M: dearer than any routed path
    # equality rows: 0 = total, 1..P = prefill balance, P+1..P+D = decode balance
    pair_i = np.repeat(np.arange(n_p), n_d * kl)
    pair_j = np.tile(np.repeat(np.arange(n_d), kl), n_p)
    link_cols = np.arange(n_link)
    pre_cols = n_link + np.arange(n_pre)
    dec_cols = n_link + n_pre + np.arange(n_dec)
    rows = np.concatenate([np.zeros(n_link + 1, int), 1 + pair_i, 1 + n_p + pair_j,
                           1 + np.repeat(np.arange(n_p), kp), 1 + n_p + np.repeat(np.arange(n_d), kd)])
    cols = np.concatenate([link_cols, [n - 1], link_cols, link_cols, pre_cols, dec_cols])
    vals = np.concatenate([np.ones(n_link + 1), np.ones(2 * n_link), -np.ones(n_pre + n_dec)])
    a_eq = coo_matrix((vals, (rows, cols)), shape=(1 + n_p + n_d, n)).tocsr()
    b_eq = np.concatenate([[rate], np.zeros(n_p + n_d)])
    upper = np.concatenate([curves.link_widths.ravel(), curves.prefill_widths.ravel(), curves.decode_widths.ravel(),
                            [np.inf]])
    upper = np.maximum(np.nan_to_num(upper, nan=0.0, posinf=np.inf), 0.0)
    c = np.nan_to_num(c, nan=c[-1], posinf=c[-1])
    bounds = np.stack([np.zeros(n), upper], axis=1)
    res = linprog(c, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
    if res.status != 0:
        raise PlanError(f"routing LP failed ({res.message}); check capacities and rate={rate}")
    return np.maximum(res.x[:n_link].reshape(n_p, n_d, kl).sum(axis=2), 0.0)


def proportional_routing(cap_p: np.ndarray, cap_d: np.ndarray, link_ok: np.ndarray, rate: float) -> np.ndarray:
    """Fast stand-in used to score search neighbours: arrivals split by prefill capacity, each prefill's output
    split by decode capacity over the links that can carry it. Flows total `rate`."""
    share_p = cap_p / cap_p.sum() if cap_p.sum() > 0 else np.full(cap_p.size, 1 / max(cap_p.size, 1))
    weights = cap_d[None, :] * link_ok
    weights = np.where(weights.sum(axis=1, keepdims=True) > 0, weights, cap_d[None, :] + 1e-12)
    weights = weights / weights.sum(axis=1, keepdims=True)
    return rate * share_p[:, None] * weights


def flows_to_routing(flows: np.ndarray, prefill_ids: Sequence[str], decode_ids: Sequence[str],
                     cap_p: np.ndarray) -> Routing:
    """Routing ratios from flows. A prefill group the flows leave idle keeps a capacity-proportional share of
    nothing (0); if no flow exists at all, arrivals split by prefill capacity."""
    total = float(flows.sum())
    row = flows.sum(axis=1)
    if total <= 0:
        row = cap_p if cap_p.sum() > 0 else np.ones(len(prefill_ids))
        total = float(row.sum())
    arrival = {p: float(row[i] / total) for i, p in enumerate(prefill_ids)}
    handoff: dict[str, dict[str, float]] = {}
    for i, p in enumerate(prefill_ids):
        r = flows[i]
        if r.sum() > 0:
            handoff[p] = {d: float(r[j] / r.sum()) for j, d in enumerate(decode_ids) if r[j] > 0}
        else:
            handoff[p] = {d: 1.0 / len(decode_ids) for d in decode_ids}
    return Routing(arrival=arrival, handoff=handoff)


def routing_to_flows(routing: Routing, prefill_ids: Sequence[str], decode_ids: Sequence[str], rate: float) -> np.ndarray:
    """The inverse of `flows_to_routing` at arrival rate `rate`."""
    flows = np.zeros((len(prefill_ids), len(decode_ids)))
    col = {d: j for j, d in enumerate(decode_ids)}
    for i, p in enumerate(prefill_ids):
        for d, r in routing.handoff.get(p, {}).items():
            if d in col:
                flows[i, col[d]] = rate * routing.arrival.get(p, 0.0) * r
    return flows


__all__ = ["LINK_UTILISATION", "Curves", "flows_to_routing", "proportional_routing", "routing_to_flows",
           "solve_convex_routing_lp", "solve_routing_lp"]
