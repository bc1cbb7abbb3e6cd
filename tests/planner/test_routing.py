"""The two-stage transportation LP and routing ratios."""

from __future__ import annotations

import numpy as np
import pytest

from planner.queueing import convex_segments
from planner.routing import (
    Curves,
    flows_to_routing,
    proportional_routing,
    routing_to_flows,
    solve_convex_routing_lp,
    solve_routing_lp,
)


def test_lp_prefers_cheap_pairs_within_capacities() -> None:
    cap_p, cap_d = np.array([3.0, 3.0]), np.array([2.0, 5.0])
    cost = np.array([[1.0, 2.0], [1.5, 9.0]])
    link = np.full((2, 2), 100.0)
    x = solve_routing_lp(cap_p, cap_d, cost, link, rate=4.0)
    assert x.sum() == pytest.approx(4.0)
    assert (x.sum(axis=1) <= cap_p + 1e-9).all() and (x.sum(axis=0) <= cap_d + 1e-9).all()
    # by hand: with no p1->d1 (cost 9), cost = 8 - x00 - 0.5·x10 under x00 + x10 <= 2, x10 >= 1 -> 6.5
    np.testing.assert_allclose(x, [[1.0, 2.0], [1.0, 0.0]], atol=1e-9)
    assert float((x * cost).sum()) == pytest.approx(6.5)


def test_lp_respects_link_capacity_and_leaves_excess_unrouted() -> None:
    x = solve_routing_lp(np.array([10.0]), np.array([10.0, 10.0]), np.array([[1.0, 5.0]]), np.array([[1.0, 2.0]]),
                         rate=5.0)
    assert x[0, 0] == pytest.approx(1.0) and x[0, 1] == pytest.approx(2.0)  # 2 req/s stay unrouted


def test_routing_ratios_round_trip() -> None:
    flows = np.array([[1.0, 3.0], [0.0, 4.0]])
    r = flows_to_routing(flows, ["p0", "p1"], ["d0", "d1"], np.array([4.0, 4.0]))
    assert r.arrival == {"p0": 0.5, "p1": 0.5}
    assert r.handoff["p0"] == {"d0": 0.25, "d1": 0.75} and r.handoff["p1"] == {"d1": 1.0}
    assert sum(r.pair_shares().values()) == pytest.approx(1.0)
    np.testing.assert_allclose(routing_to_flows(r, ["p0", "p1"], ["d0", "d1"], rate=8.0), flows)


def test_proportional_routing_skips_unusable_links() -> None:
    x = proportional_routing(np.array([1.0, 3.0]), np.array([1.0, 1.0]), np.array([[1.0, 0.0], [1.0, 1.0]]), 2.0)
    assert x.sum() == pytest.approx(2.0) and x[0, 1] == 0.0 and x[0, 0] == pytest.approx(0.5)


def test_convex_lp_spreads_load_where_the_flat_lp_packs() -> None:
    cap_p, cap_d = np.array([4.0, 4.0]), np.array([10.0])
    cost = np.array([[1.0], [1.05]])  # replica 0 is slightly cheaper
    link = np.full((2, 1), 100.0)
    packed = solve_routing_lp(cap_p, cap_d, cost, link, rate=4.0)
    np.testing.assert_allclose(packed[:, 0], [4.0, 0.0], atol=1e-9)  # flat: fills replica 0 to its capacity
    # the same problem with a 1/(1 − ρ) delay curve per prefill replica (M/M/1-like total g(y) = y/(cap − y))
    flows = np.linspace(0.0, 4.0, 9)
    totals = np.where(flows < 4.0, flows / np.maximum(4.0 - flows, 1e-9) * 0.1, np.inf)
    w, s = convex_segments(flows, totals)
    curves = Curves(prefill_widths=np.stack([w, w]), prefill_slopes=np.stack([s, s]),
                    decode_widths=np.array([[10.0]]), decode_slopes=np.zeros((1, 1)),
                    link_widths=np.full((2, 1, 1), 100.0), link_slopes=np.zeros((2, 1, 1)))
    spread = solve_convex_routing_lp(curves, cost, rate=4.0)
    assert spread.sum() == pytest.approx(4.0)
    assert 1.5 <= spread[1, 0] <= 2.0 <= spread[0, 0] <= 2.5  # near-even split, cheaper replica a little more
    over = solve_convex_routing_lp(curves, cost, rate=20.0)
    assert over.sum() == pytest.approx(8.0)  # beyond both capacities the rest stays unrouted
