"""Smooth weighted round-robin and the router's per-replica SLO prediction."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from thunder.runtime.messages import DeviceStats
from thunder.runtime.routing import ReplicaLoad, SloTargets, SmoothWRR, least_loaded

SLO = SloTargets(ttft_s=1.0, tpot_s=0.1)


def stats(replica: str, *, running: int = 0, used: int = 0, total: int = 100, max_num_seqs: int = 8) -> DeviceStats:
    return DeviceStats(replica=replica, role="decode", running=running, waiting=0, held=0, kv_pages_used=used,
                       kv_pages_total=total, steps=1, num_preemptions=0, max_num_seqs=max_num_seqs)


def test_swrr_is_smooth_nginx_sequence() -> None:
    wrr = SmoothWRR({"a": 5, "b": 1, "c": 1})
    assert [wrr.pick() for _ in range(7)] == ["a", "a", "b", "a", "c", "a", "a"]


@given(st.dictionaries(st.sampled_from("abcdef"), st.integers(0, 9), min_size=1), st.integers(1, 5))
def test_swrr_exact_shares_over_whole_periods(weights: dict[str, int], periods: int) -> None:
    total = sum(weights.values())
    wrr = SmoothWRR({k: float(w) for k, w in weights.items()})
    if total == 0:
        assert wrr.pick() is None
        return
    picks = Counter(wrr.pick() for _ in range(total * periods))
    assert picks == Counter({k: w * periods for k, w in weights.items() if w > 0})


def test_swrr_skips_ineligible_and_keeps_ratio_among_the_rest() -> None:
    wrr = SmoothWRR({"a": 2, "b": 1, "c": 1})
    picks = Counter(wrr.pick(lambda g: g != "a") for _ in range(40))
    assert picks == Counter({"b": 20, "c": 20})
    assert wrr.pick(lambda g: False) is None


def test_swrr_rejects_bad_weights() -> None:
    with pytest.raises(ValueError, match="finite and >= 0"):
        SmoothWRR({"a": -1.0})


def test_prefill_prediction_uses_queue_and_measured_rate() -> None:
    load = ReplicaLoad("g0", "prefill")
    assert not load.would_miss(SLO, 10_000, decoding=False)  # nothing measured yet: never skipped
    load.observe(stats("g0"), step_s=0.5, prefill_tokens=500, decode_tokens=0)  # 1 ms per prompt token
    assert load.predicted_ttft_s(100) == pytest.approx(0.1)
    load.queued_prompt_tokens = 950
    assert load.would_miss(SLO, 100, decoding=False)  # (950 + 100) ms > 1 s
    assert not load.would_miss(SLO, 40, decoding=False)


def test_an_idle_replicas_measurement_fades_so_a_skipped_replica_is_tried_again() -> None:
    load = ReplicaLoad("g0", "prefill")
    load.observe(stats("g0"), step_s=0.12, prefill_tokens=2, decode_tokens=0, now=10.0)  # a 2-token chunk: 60 ms/token
    assert load.would_miss(SLO, 64, decoding=False, now=10.0)  # 3.8 s predicted for 64 tokens, over the 1 s TTFT
    assert load.would_miss(SLO, 64, decoding=False, now=13.0)  # 1.4 s after 1.5 half-lives
    assert not load.would_miss(SLO, 64, decoding=False, now=14.0)  # 0.96 s: it takes one and is measured again
    load.observe(stats("g0"), step_s=0.12, prefill_tokens=64, decode_tokens=0, now=14.2)  # after the gap:
    assert load.predicted_ttft_s(64, now=14.2) == pytest.approx(0.12)  # the new measurement replaces the old
    load.observe(stats("g0"), step_s=0.24, prefill_tokens=64, decode_tokens=0, now=14.4)
    assert load.predicted_ttft_s(64, now=14.4) == pytest.approx(0.8 * 0.12 + 0.2 * 0.24)  # back to back: averaged
    busy = ReplicaLoad("g1", "prefill")
    busy.observe(stats("g1"), step_s=0.5, prefill_tokens=500, decode_tokens=0, now=0.0)
    busy.queued_prompt_tokens = 2_000
    assert busy.would_miss(SLO, 64, decoding=False, now=1_000.0)  # a real queue does not fade
    slow = ReplicaLoad("g2", "decode")
    slow.observe(stats("g2"), step_s=0.3, prefill_tokens=0, decode_tokens=4, now=0.0)
    slow.active = 2
    assert slow.would_miss(SLO, 10, decoding=True, now=100.0)  # busy: its step time is current
    slow.active = 0
    assert not slow.would_miss(SLO, 10, decoding=True, now=100.0)  # idle for 50 half-lives


def test_decode_prediction_uses_batch_slots_kv_and_step_time() -> None:
    load = ReplicaLoad("g1", "decode")
    load.observe(stats("g1"), step_s=0.05, prefill_tokens=0, decode_tokens=4)
    assert not load.would_miss(SLO, 10, decoding=True)
    load.active = 8
    assert load.would_miss(SLO, 10, decoding=True)  # batch full
    load.active = 1
    load.observe(stats("g1", used=97), step_s=0.05, prefill_tokens=0, decode_tokens=4)
    assert load.would_miss(SLO, 10, decoding=True)  # KV pool above the high-water mark
    slow = ReplicaLoad("g2", "decode")
    slow.observe(stats("g2"), step_s=0.3, prefill_tokens=0, decode_tokens=4)
    assert slow.would_miss(SLO, 10, decoding=True)
    slow.draining = True
    assert least_loaded([slow], 10, decoding=True) is None


def test_least_loaded_prefers_the_shortest_predicted_wait() -> None:
    a, b = ReplicaLoad("a", "prefill"), ReplicaLoad("b", "prefill")
    for x in (a, b):
        x.observe(stats(x.replica), step_s=0.1, prefill_tokens=100, decode_tokens=0)
    a.queued_prompt_tokens, b.queued_prompt_tokens = 3000, 2000
    best = least_loaded([a, b], 50, decoding=False)
    assert best is b
