"""The rate search finds the attainment cliff of a system whose capacity is known."""

from __future__ import annotations

import numpy as np
import pytest

from planner.sim_engine import simulate_topology
from planner.sim_search import max_rate_at_attainment
from planner.sim_types import AffinePerf, SimReplica, SimTopology, poisson_requests


def _server(service: float) -> SimTopology:
    perf = AffinePerf(prefill_base_s=service, prefill_per_token_s=0.0, decode_base_s=0.01)
    rep = SimReplica(name="c0", role="colocated", perf=perf, max_batch_tokens=100)
    z = np.zeros((1, 1))
    return SimTopology(replicas=(rep,), entry_ratios=np.array([1.0]), pair_ratios=z, link_latency_s=z,
                       link_bandwidth_Bps=np.ones((1, 1)), kv_wire_bytes_per_token=0.0)


def test_max_rate_stays_below_capacity_and_shrinks_with_tighter_slo() -> None:
    service = 0.1  # capacity 10 req/s
    topo = _server(service)

    def run(rate: float):  # type: ignore[no-untyped-def]
        return simulate_topology(topo, poisson_requests(rate, np.array([100]), np.array([1]), n=3000, seed=5))

    loose = max_rate_at_attainment(run, ttft_slo_s=1.0, tpot_slo_s=1.0, guess=1.0)
    tight = max_rate_at_attainment(run, ttft_slo_s=0.3, tpot_slo_s=1.0, guess=1.0)
    assert 7.0 < loose.rate < 10.0
    assert tight.rate < loose.rate
    assert loose.result is not None and loose.result.attainment(1.0, 1.0) >= 0.9
    # the search is bracketed: just above the found rate the target is missed
    assert run(loose.rate * 1.1).attainment(1.0, 1.0) < 0.9


def test_unreachable_slo_gives_zero_rate() -> None:
    topo = _server(0.1)

    def run(rate: float):  # type: ignore[no-untyped-def]
        return simulate_topology(topo, poisson_requests(rate, np.array([100]), np.array([1]), n=200, seed=5))

    found = max_rate_at_attainment(run, ttft_slo_s=0.05, tpot_slo_s=1.0, guess=1.0)
    assert found.rate == 0.0 and found.result is None


def _decode_bound(step: float, batch: int) -> SimTopology:
    fast = AffinePerf(prefill_base_s=1e-4, prefill_per_token_s=0.0, decode_base_s=step)
    reps = (SimReplica(name="p0", role="prefill", perf=fast),
            SimReplica(name="d0", role="decode", perf=fast, max_batch_size=batch))
    z = np.zeros((2, 2))
    return SimTopology(replicas=reps, entry_ratios=np.array([1.0, 0.0]),
                       pair_ratios=np.array([[0.0, 1.0], [0.0, 0.0]]), link_latency_s=z,
                       link_bandwidth_Bps=np.ones((2, 2)), kv_wire_bytes_per_token=0.0)


def test_short_window_passes_overload_that_steady_state_rejects() -> None:
    step, batch, out = 0.02, 8, 51
    topo = _decode_bound(step, batch)
    capacity = batch / ((out - 1) * step)  # 8 req/s; a request's TPOT slack is (0.1 - 0.02) * 50 = 4 s of waiting

    def runner(n: int):  # type: ignore[no-untyped-def]
        return lambda rate: simulate_topology(topo, poisson_requests(rate, np.array([10]), np.array([out]), n=n,
                                                                     seed=3))

    short = max_rate_at_attainment(runner(200), ttft_slo_s=10.0, tpot_slo_s=0.1, guess=capacity)
    steady = max_rate_at_attainment(runner(10_000), ttft_slo_s=10.0, tpot_slo_s=0.1, guess=capacity, warmup=0.2)
    longer = max_rate_at_attainment(runner(20_000), ttft_slo_s=10.0, tpot_slo_s=0.1, guess=capacity, warmup=0.2)
    assert short.rate > 1.1 * capacity  # ~25 s of traffic: the slot queue never outgrows the slack
    assert steady.rate <= 1.03 * capacity
    assert longer.rate == pytest.approx(steady.rate, rel=0.035)  # converged at the bisection's tolerance


def test_after_warmup_keeps_the_later_arrivals() -> None:
    res = simulate_topology(_server(0.1), poisson_requests(5.0, np.array([100]), np.array([1]), n=100, seed=1))
    tail = res.after_warmup(0.25)
    assert tail.n == 75
    assert np.array_equal(tail.arrival_s, np.sort(res.arrival_s)[25:])
    assert res.after_warmup(0.0) is res
    with pytest.raises(ValueError, match="warmup"):
        res.after_warmup(1.0)
