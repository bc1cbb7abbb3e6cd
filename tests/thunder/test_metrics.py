"""ServingMetrics: per-request histograms, per-replica gauges, windowed SLO attainment and goodput per $/h."""

from __future__ import annotations

import math

import pytest
from prometheus_client.parser import text_string_to_metric_families

from thunder.metrics import MetricsConfigError, ServingMetrics, SloTargets


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def value(metrics: ServingMetrics, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(metrics.render()[0].decode()):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    raise KeyError(f"{name} {labels}")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def metrics(clock: FakeClock) -> ServingMetrics:
    return ServingMetrics(model_name="m", slo=SloTargets(ttft_s=0.5, tpot_s=0.05, window_s=10.0), clock=clock)


def test_tpot_follows_the_vllm_bench_definition(metrics: ServingMetrics) -> None:
    metrics.record_request(
        ttft_s=0.2, e2e_s=1.2, num_prompt_tokens=5, num_output_tokens=11, finish_reason="stop"
    )
    assert value(metrics, "thunder:time_per_output_token_seconds_sum", model_name="m") == pytest.approx(0.1)
    assert value(metrics, "thunder:time_to_first_token_seconds_sum", model_name="m") == pytest.approx(0.2)
    assert value(metrics, "thunder:e2e_request_latency_seconds_sum", model_name="m") == pytest.approx(1.2)
    assert value(metrics, "thunder:generation_tokens_total", model_name="m") == 11


def test_single_token_requests_have_no_tpot_sample(metrics: ServingMetrics) -> None:
    metrics.record_request(
        ttft_s=0.1, e2e_s=0.1, num_prompt_tokens=5, num_output_tokens=1, finish_reason="length"
    )
    assert value(metrics, "thunder:time_per_output_token_seconds_count", model_name="m") == 0
    assert metrics.slo_attainment() == 1.0  # TPOT counts as 0 for such a request (vLLM's goodput rule)


def test_slo_attainment_and_goodput_over_a_sliding_window(metrics: ServingMetrics, clock: FakeClock) -> None:
    assert math.isnan(metrics.slo_attainment())
    good = {"ttft_s": 0.4, "e2e_s": 0.4 + 0.04 * 9, "num_prompt_tokens": 1, "num_output_tokens": 10}
    slow_first = {**good, "ttft_s": 0.6, "e2e_s": 0.6 + 0.04 * 9}
    slow_decode = {**good, "e2e_s": 0.4 + 0.06 * 9}
    clock.now += 4
    for kw in (good, good, good, slow_first, slow_decode):
        metrics.record_request(finish_reason="stop", **kw)
    assert metrics.slo_attainment() == pytest.approx(3 / 5)
    assert metrics.goodput_rps() == pytest.approx(3 / 4)  # only 4 s have elapsed since start
    assert math.isnan(metrics.goodput_per_usd_per_hour())
    metrics.set_usd_per_hour(2.0)
    assert metrics.goodput_per_usd_per_hour() == pytest.approx(3 / 4 / 2.0)
    clock.now += 8  # the five requests are now 8 s old: still inside the 10 s window
    metrics.record_request(finish_reason="stop", **slow_first)
    assert metrics.slo_attainment() == pytest.approx(3 / 6)
    assert metrics.goodput_rps() == pytest.approx(3 / 10)
    clock.now += 3  # the first five fall out of the window
    assert metrics.slo_attainment() == 0.0
    assert value(metrics, "thunder:slo_attainment") == 0.0


def test_backend_state_replaces_replica_gauges(metrics: ServingMetrics) -> None:
    row = {"replica": "G0", "role": "prefill", "num_running": 3, "num_waiting": 1, "kv_cache_usage": 0.5}
    metrics.update_from_state({"replicas": [row], "usd_per_hour": 3.0})
    assert value(metrics, "thunder:num_requests_running", replica="G0", role="prefill") == 3
    metrics.update_from_state({"replicas": [{**row, "role": "decode", "num_running": 7}]})  # role flipped
    assert value(metrics, "thunder:num_requests_running", replica="G0", role="decode") == 7
    with pytest.raises(KeyError):
        value(metrics, "thunder:num_requests_running", replica="G0", role="prefill")
    assert value(metrics, "thunder:cluster_usd_per_hour") == 3.0


def test_backend_counters(metrics: ServingMetrics) -> None:
    metrics.record_prefill_tokens("P0", "prefill", 100)
    metrics.record_decode_tokens("D0", "decode", 7)
    metrics.record_kv_transfer("P0", "D0", 4096)
    metrics.record_kv_transfer("P0", "D0", 1024)
    assert value(metrics, "thunder:prefill_tokens_total", replica="P0", role="prefill") == 100
    assert value(metrics, "thunder:decode_tokens_total", replica="D0", role="decode") == 7
    assert value(metrics, "thunder:kv_transfer_bytes_total", src_replica="P0", dst_replica="D0") == 5120


def test_two_instances_do_not_share_a_registry() -> None:
    a, b = ServingMetrics(model_name="a"), ServingMetrics(model_name="b")
    a.record_prefill_tokens("P0", "prefill", 5)
    assert value(a, "thunder:prefill_tokens_total", replica="P0", role="prefill") == 5
    with pytest.raises(KeyError):
        value(b, "thunder:prefill_tokens_total", replica="P0", role="prefill")


@pytest.mark.parametrize("field", ["ttft_s", "tpot_s", "window_s"])
def test_bad_slo_targets_name_the_field(field: str) -> None:
    with pytest.raises(MetricsConfigError, match=field):
        SloTargets(**{field: 0.0})


def test_negative_price_is_refused(metrics: ServingMetrics) -> None:
    with pytest.raises(MetricsConfigError, match="usd_per_hour=-1"):
        metrics.set_usd_per_hour(-1)
