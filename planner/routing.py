"""Orchestration: the two-stage transportation LP arrivals -> prefill replicas -> decode replicas (scipy HiGHS).

Variables x_ij >= 0 (req/s from prefill i to decode j) and u >= 0 (unrouted req/s):
    minimise   Σ c_ij x_ij + M·u
    subject to Σ_ij x_ij + u = λ                  (every arrival is routed or counted unrouted)
               Σ_j x_ij <= cap_i^P                (prefill SLO-feasible capacity; x_0i = Σ_j x_ij)
               Σ_i x_ij <= cap_j^D                (decode SLO-feasible capacity)
               x_ij · kv_bytes <= η·β_ij           (KV handoff link capacity, compressed bytes)
with c_ij = prefill latency_i + KV transfer_ij + E[out]·TPOT_j. Routing ratios follow from x.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import coo_matrix

from planner.errors import PlanError
from planner.plan import Routing

LINK_UTILISATION = 0.8
"""Share of a link's bandwidth the KV handoff may plan to use."""


def solve_routing_lp(cap_p: np.ndarray, cap_d: np.ndarray, cost: np.ndarray, link_cap: np.ndarray,
                     rate: float) -> np.ndarray:
    """Flows x (P×D, req/s) from the LP above. Arrivals beyond the capacities stay unrouted (not in x)."""
    n_p, n_d = cost.shape
    n = n_p * n_d
    big = 1e3 * (float(np.max(cost, initial=1.0)) + 1.0)
    c = np.concatenate([cost.ravel(), [big]])
    rows_p = np.repeat(np.arange(n_p), n_d)                      # Σ_j x_ij <= cap_p[i]
    rows_d = n_p + np.tile(np.arange(n_d), n_p)                  # Σ_i x_ij <= cap_d[j]
    cols = np.arange(n)
    a_ub = coo_matrix((np.ones(2 * n), (np.concatenate([rows_p, rows_d]), np.concatenate([cols, cols]))),
                      shape=(n_p + n_d, n + 1)).tocsr()
    b_ub = np.concatenate([cap_p, cap_d])
    a_eq = np.ones((1, n + 1))
    bounds = [(0.0, float(x)) for x in link_cap.ravel()] + [(0.0, None)]
    res = linprog(c, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=[rate], bounds=bounds, method="highs")
    if res.status != 0:
        raise PlanError(f"routing LP failed ({res.message}); check capacities and rate={rate}")
    return np.maximum(res.x[:n].reshape(n_p, n_d), 0.0)


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


__all__ = ["LINK_UTILISATION", "flows_to_routing", "proportional_routing", "routing_to_flows", "solve_routing_lp"]
