"""Known-answer tests for the discrete-event core: M/D/1, saturation, zero load, links, KV capacity."""

from __future__ import annotations

import numpy as np
import pytest

from planner.sim_engine import simulate_topology, smooth_wrr
from planner.sim_types import AffinePerf, Requests, SimConfigError, SimReplica, SimTopology, poisson_requests


def _single(perf: AffinePerf, *, max_batch_tokens: int = 8192, max_batch_size: int = 256) -> SimTopology:
    rep = SimReplica(
        name="c0", role="colocated", perf=perf, max_batch_tokens=max_batch_tokens, max_batch_size=max_batch_size
    )
    z = np.zeros((1, 1))
    return SimTopology(
        replicas=(rep,), entry_ratios=np.array([1.0]), pair_ratios=z, link_latency_s=z,
        link_bandwidth_Bps=np.ones((1, 1)), kv_wire_bytes_per_token=0.0,
    )


def _pair(perf_p: AffinePerf, perf_d: AffinePerf, *, alpha: float, beta: float, kv_bytes: float,
          max_batch_size: int = 256) -> SimTopology:
    reps = (
        SimReplica(name="p0", role="prefill", perf=perf_p),
        SimReplica(name="d0", role="decode", perf=perf_d, max_batch_size=max_batch_size),
    )
    lat = np.array([[0.0, alpha], [0.0, 0.0]])
    bw = np.array([[1.0, beta], [1.0, 1.0]])
    return SimTopology(
        replicas=reps, entry_ratios=np.array([1.0, 0.0]), pair_ratios=np.array([[0.0, 1.0], [0.0, 0.0]]),
        link_latency_s=lat, link_bandwidth_Bps=bw, kv_wire_bytes_per_token=kv_bytes,
    )


@pytest.mark.parametrize("rho", [0.3, 0.6, 0.85])
def test_single_server_matches_pollaczek_khinchine(rho: float) -> None:
    service = 0.1
    topo = _single(AffinePerf(prefill_base_s=service, prefill_per_token_s=0.0, decode_base_s=0.01),
                   max_batch_tokens=100)  # one 100-token prompt per batch → deterministic service
    lam = rho / service
    reqs = poisson_requests(lam, np.array([100]), np.array([1]), n=40_000, seed=7)
    res = simulate_topology(topo, reqs)
    expected_wait = lam * service**2 / (2 * (1 - rho))  # M/D/1 mean wait in queue
    assert res.ttft_s.mean() == pytest.approx(expected_wait + service, rel=0.05)


def test_saturated_decode_throughput_caps_at_capacity() -> None:
    step, batch, out = 0.02, 8, 51
    perf_p = AffinePerf(prefill_base_s=1e-4, prefill_per_token_s=0.0, decode_base_s=step)
    perf_d = AffinePerf(prefill_base_s=1e-4, prefill_per_token_s=0.0, decode_base_s=step)
    topo = _pair(perf_p, perf_d, alpha=0.0, beta=1e12, kv_bytes=0.0, max_batch_size=batch)
    capacity = batch / ((out - 1) * step)  # req/s
    reqs = poisson_requests(3 * capacity, np.array([10]), np.array([out]), n=2000, seed=1)
    res = simulate_topology(topo, reqs)
    assert res.throughput_rps == pytest.approx(capacity, rel=0.03)
    assert res.completed.all()
    # the decode queue grows under overload: late arrivals wait far longer; TTFT (prefill side) stays flat
    assert res.e2e_s[-100:].mean() > 10 * res.e2e_s[:100].mean()
    assert res.ttft_s.max() < 0.01


def test_zero_load_latency_is_pure_service_time() -> None:
    prompt, out = 300, 6
    perf_p = AffinePerf(prefill_base_s=0.05, prefill_per_token_s=2e-4, decode_base_s=0.0)
    perf_d = AffinePerf(prefill_base_s=0.0, prefill_per_token_s=0.0, decode_base_s=0.03,
                        decode_per_seq_s=0.001, decode_per_ctx_token_s=1e-5)
    alpha, beta, kv_bytes = 0.002, 1e9, 4000.0
    topo = _pair(perf_p, perf_d, alpha=alpha, beta=beta, kv_bytes=kv_bytes)
    reqs = Requests(arrival_s=np.array([1.0]), prompt_tokens=np.array([prompt]), output_tokens=np.array([out]))
    res = simulate_topology(topo, reqs)
    ttft = 0.05 + 2e-4 * prompt
    transfer = alpha + prompt * kv_bytes / beta
    decode = sum(0.03 + 0.001 + 1e-5 * (prompt + 1 + k) for k in range(out - 1))
    assert res.ttft_s[0] == pytest.approx(ttft)
    assert res.e2e_s[0] == pytest.approx(ttft + transfer + decode)
    assert res.tpot_s[0] == pytest.approx((transfer + decode) / (out - 1))


def test_transfers_on_one_link_serialize() -> None:
    perf = AffinePerf(prefill_base_s=0.01, prefill_per_token_s=0.0, decode_base_s=0.001)
    topo = _pair(perf, perf, alpha=0.0, beta=1e6, kv_bytes=1000.0)  # 1000 tokens → 1 s per transfer
    reqs = Requests(arrival_s=np.zeros(3), prompt_tokens=np.full(3, 1000), output_tokens=np.full(3, 2))
    res = simulate_topology(topo, reqs)
    # request 0 is prefilled alone (0 → 0.01), requests 1 and 2 together (0.01 → 0.02); the three 1 s
    # transfers share the link and run back to back from 0.01
    assert np.allclose(res.first_token_s, [0.01, 0.02, 0.02])
    assert np.allclose(res.finish_s, 0.01 + np.array([1.0, 2.0, 3.0]) + 0.001)


def test_decode_kv_capacity_admits_one_request_at_a_time() -> None:
    perf_p = AffinePerf(prefill_base_s=0.01, prefill_per_token_s=0.0, decode_base_s=0.0)
    perf_d = AffinePerf(prefill_base_s=0.0, prefill_per_token_s=0.0, decode_base_s=0.1, kv_tokens=150)
    topo = _pair(perf_p, perf_d, alpha=0.0, beta=1e12, kv_bytes=0.0)
    reqs = Requests(arrival_s=np.zeros(2), prompt_tokens=np.full(2, 100), output_tokens=np.full(2, 11))
    res = simulate_topology(topo, reqs)
    # each needs 111 KV tokens of 150: the second decodes only after the first finished its 10 steps
    assert np.allclose(np.sort(res.finish_s), [0.01 + 1.0, 0.01 + 2.0])


def test_request_that_cannot_fit_fails_and_misses_slo() -> None:
    perf = AffinePerf(prefill_base_s=0.01, prefill_per_token_s=0.0, decode_base_s=0.01, kv_tokens=100)
    topo = _single(perf)
    reqs = Requests(arrival_s=np.array([0.0, 0.1]), prompt_tokens=np.array([500, 10]),
                    output_tokens=np.array([5, 5]))
    res = simulate_topology(topo, reqs)
    assert res.completed.tolist() == [False, True]
    assert res.attainment(10.0, 10.0) == 0.5


def test_colocated_prefill_priority_stalls_decode() -> None:
    perf = AffinePerf(prefill_base_s=0.5, prefill_per_token_s=0.0, decode_base_s=0.01)
    topo = _single(perf, max_batch_tokens=10)
    reqs = Requests(arrival_s=np.array([0.0, 0.52]), prompt_tokens=np.array([10, 10]),
                    output_tokens=np.array([5, 2]))
    res = simulate_topology(topo, reqs)
    # request 0 decodes from 0.5; at 0.52 request 1's prefill preempts the next step (0.52 → 1.02)
    assert res.first_token_s[1] == pytest.approx(1.02)
    assert res.finish_s[0] > 1.02


def test_colocated_pipeline_decode_waits_for_the_whole_prefill_pass() -> None:
    # PP 4: the prefill pass takes 0.4 s end to end and frees the first stage after 0.1 s
    perf = AffinePerf(prefill_base_s=0.4, prefill_per_token_s=0.0, decode_base_s=0.01, pipeline_depth=4)
    topo = _single(perf, max_batch_tokens=10)
    reqs = Requests(arrival_s=np.array([0.0, 0.455]), prompt_tokens=np.array([10, 10]),
                    output_tokens=np.array([20, 2]))
    res = simulate_topology(topo, reqs)
    # request 0 decodes from 0.40 (steps end 0.41 ... 0.46); request 1's pass runs 0.46 → 0.86. The decode step
    # issued at 0.56 (first stage free) queues behind it and ends at 0.86, then 12 more steps: 0.98 (not 0.69)
    assert res.first_token_s[1] == pytest.approx(0.86)
    assert res.finish_s[0] == pytest.approx(0.98)


def test_routing_ratios_split_arrivals_and_simulation_is_deterministic() -> None:
    perf = AffinePerf(prefill_base_s=0.01, prefill_per_token_s=1e-5, decode_base_s=0.01)
    reps = tuple(SimReplica(name=f"c{i}", role="colocated", perf=perf) for i in range(3))
    z = np.zeros((3, 3))
    topo = SimTopology(replicas=reps, entry_ratios=np.array([0.5, 0.3, 0.2]), pair_ratios=z,
                       link_latency_s=z, link_bandwidth_Bps=np.ones((3, 3)), kv_wire_bytes_per_token=0.0)
    picks = smooth_wrr(topo.entry_ratios, 1000)
    assert np.bincount(picks, minlength=3).tolist() == [500, 300, 200]
    reqs = poisson_requests(20.0, np.array([100, 500]), np.array([20, 3]), n=500, seed=3)
    a, b = simulate_topology(topo, reqs), simulate_topology(topo, reqs)
    assert np.array_equal(a.finish_s, b.finish_s)


def test_bad_topology_names_the_field() -> None:
    perf = AffinePerf(prefill_base_s=0.01, prefill_per_token_s=0.0, decode_base_s=0.01)
    rep = SimReplica(name="d0", role="decode", perf=perf)
    z = np.zeros((1, 1))
    with pytest.raises(SimConfigError, match="entry_ratios"):
        SimTopology(replicas=(rep,), entry_ratios=np.array([1.0]), pair_ratios=z, link_latency_s=z,
                    link_bandwidth_Bps=z, kv_wire_bytes_per_token=0.0)
    with pytest.raises(SimConfigError, match="role"):
        SimReplica(name="x", role="both", perf=perf)  # type: ignore[arg-type]
