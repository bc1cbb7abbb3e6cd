"""Queueing formulas: exact where the model is exact (M/M/1, Erlang C), Monte Carlo where it is a convolution."""

from __future__ import annotations

import math

import numpy as np
import pytest

from planner.queueing import (
    NO_WAIT,
    SATURATED,
    WaitTail,
    convex_segments,
    erlang_c,
    mg1_wait,
    mg1_wait_arrays,
    mmc_wait,
    sum_exceeds,
    sum_exceeds_arrays,
)


def test_mg1_tail_is_exact_for_exponential_service() -> None:
    lam, mu = 3.0, 5.0  # M/M/1: P(W > t) = ρ·exp(−(μ − λ)t)
    tail = mg1_wait(lam, 1 / mu, 2 / mu**2)
    t = np.array([0.0, 0.1, 0.5, 2.0])
    np.testing.assert_allclose(tail.exceeds(t), 0.6 * np.exp(-(mu - lam) * t))
    assert tail.mean == pytest.approx(0.6 / (mu - lam))  # Pollaczek–Khinchine = M/M/1 mean wait
    assert tail.exceeds(-1.0) == 1.0
    assert mg1_wait(5.0, 0.2, 0.08).exceeds(100.0) == 1.0  # ρ = 1: saturated, every deadline is missed


def test_erlang_c_known_values_and_mmc_tail() -> None:
    assert erlang_c(1, 0.7) == pytest.approx(0.7)
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    assert erlang_c(10, 8.0) == pytest.approx(0.4092, abs=1e-4)  # standard table value
    assert erlang_c(4, 4.0) == 1.0
    tail = mmc_wait(2, 1.0, 1.0)  # P(W > t) = C·exp(−(c − a)t/S)
    assert tail.exceeds(np.array([1.0]))[0] == pytest.approx(math.exp(-1.0) / 3)


def test_sum_of_two_waits_matches_monte_carlo() -> None:
    a, b = mg1_wait(2.0, 0.3, 0.12), mmc_wait(3, 2.0, 1.2)
    rng = np.random.default_rng(0)
    n = 400_000
    wa = np.where(rng.random(n) < a.p, rng.exponential(1 / a.theta, n), 0.0)
    wb = np.where(rng.random(n) < b.p, rng.exponential(1 / b.theta, n), 0.0)
    t = np.array([0.0, 0.2, 0.5, 1.0, 3.0])
    np.testing.assert_allclose(sum_exceeds(a, b, t), [(wa + wb > x).mean() for x in t], atol=3e-3)


def test_convex_segments_rise_and_cover_the_capacity() -> None:
    flows = np.array([0.0, 1.0, 2.0, 3.0])
    widths, slopes = convex_segments(flows, np.array([0.0, 1.0, 1.5, np.inf]))
    np.testing.assert_allclose(widths, [1.0, 1.0, 1.0])
    assert np.all(np.diff(slopes) >= 0) and slopes[-1] > 100  # dented curve straightened, inf -> very steep


def test_vectorised_tails_match_the_scalar_ones_on_every_branch() -> None:
    waits = [NO_WAIT, SATURATED, WaitTail(0.4, 2.0), WaitTail(0.7, 2.0), WaitTail(0.2, 5.0), WaitTail(0.9, 2.0000001)]
    t = np.array([-1.0, 0.0, 0.3, 1.5, 10.0])
    for a in waits:
        for b in waits:
            got = sum_exceeds_arrays(a.p, a.theta, b.p, b.theta, t)
            assert np.array_equal(got, sum_exceeds(a, b, t)), (a, b)
    rate, mean, sq = np.array([0.0, 1.0, 3.0, 2.0]), np.array([0.2, 0.2, 0.5, 0.0]), np.array([0.05, 0.05, 0.3, 0.0])
    p, theta = mg1_wait_arrays(rate, mean, sq)
    for k in range(rate.size):
        w = mg1_wait(float(rate[k]), float(mean[k]), float(sq[k]))
        assert (p[k], theta[k]) == (w.p, w.theta)


def test_round_robin_split_of_poisson_arrivals_has_cv2_of_the_share() -> None:
    from planner.queueing import split_arrival_cv2
    from planner.sim_engine import smooth_wrr

    times = np.cumsum(np.random.default_rng(0).exponential(1.0, 200_000))

    def dealt_cv2(weights: list[float]) -> list[float]:  # what the simulator's router deals each replica
        picks = smooth_wrr(np.array(weights), times.size)
        gaps = [np.diff(times[picks == k]) for k in range(len(weights))]
        return [float(g.var() / g.mean() ** 2) for g in gaps]

    for weights in ([1.0, 1.0], [1.0, 1.0, 1.0, 1.0], [2.0, 1.0]):  # Erlang-k gaps; k, k + 1 alternating for 2:1
        shares = np.array(weights) / sum(weights)
        np.testing.assert_allclose(dealt_cv2(weights), split_arrival_cv2(shares), rtol=0.05)
    # uneven weights: the largest share's gaps vary more than the smoothest split (0.52 vs 0.44), the rest match
    uneven = dealt_cv2([4.0, 3.0, 2.0, 1.0])
    assert np.all(np.array(uneven) >= split_arrival_cv2(np.array([0.4, 0.3, 0.2, 0.1])) - 0.01)
    np.testing.assert_allclose(uneven[1:], split_arrival_cv2(np.array([0.3, 0.2, 0.1])), rtol=0.05)
