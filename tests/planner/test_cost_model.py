"""Cost model against hand calculations; memory limits; KV transfer; calibration recovers known constants."""

from __future__ import annotations

import math

import numpy as np
import pytest

from planner import CostModel, DeviceConstants, Link, ModelSpec, ProfileSample, ReplicaConfig, StageConfig
from planner.calibrate import predict
from planner.cost_model import KV_4BIT_COMPRESSION, kv_transfer_time

LLAMA = ModelSpec.from_catalog("llama-30b")
F, B = 100e12, 1e12  # simple effective constants for hand calculation
CM = CostModel(model=LLAMA, devices={"x": DeviceConstants(flops=F, mem_bw=B, memory_bytes=48e9)})


def _one_stage(layers: int = 60, tp: int = 1, bw: float = math.inf, lat: float = 0.0) -> ReplicaConfig:
    return ReplicaConfig.single("x", tuple(f"d{i}" for i in range(tp)), layers, tp_link=Link(bandwidth=bw, latency=lat))


def test_decode_batch1_is_weight_streaming() -> None:
    # decode of 1 token: bytes = all weights (2 B/param) + KV read (ctx tokens); FLOPs tiny -> memory bound
    ctx = 1000
    nbytes = LLAMA.param_count * 2 + ctx * LLAMA.kv_bytes_per_token(2)
    assert CM.decode_step_time(_one_stage(), 1, ctx) == pytest.approx(nbytes / B, rel=1e-9)


def test_prefill_long_prompt_is_compute_bound() -> None:
    s = 2000
    m = LLAMA
    flops = 60 * (s * m.layer_linear_flops_per_token + s * (s + 1) / 2 * 4 * 52 * 128) + 2 * m.vocab_size * m.hidden_size
    assert m.layer_linear_flops_per_token == 2 * (m.layer_params - 2 * m.hidden_size)
    assert CM.prefill_time(_one_stage(), [s]) == pytest.approx(flops / F, rel=1e-9)


def test_tp_divides_work_and_adds_ring_allreduce() -> None:
    bw, lat = 20e9, 10e-6
    t1 = CM.decode_step_time(_one_stage(), 4, 500)
    t2 = CM.decode_step_time(_one_stage(tp=2, bw=bw, lat=lat), 4, 500)
    msg = 4 * LLAMA.hidden_size * 2
    allreduce = 2 * (2 - 1) * lat + 2 * (2 - 1) / 2 * msg / bw
    assert t2 == pytest.approx(t1 / 2 + 2 * 60 * allreduce, rel=1e-9)


def test_pp_hop_and_microbatched_decode() -> None:
    hop = Link(bandwidth=5e9, latency=1e-3)
    stages = (StageConfig(gpu_type="x", device_ids=("a",), num_layers=30),
              StageConfig(gpu_type="x", device_ids=("b",), num_layers=30))
    pp = ReplicaConfig(stages=stages, hops=(hop,))
    s = [1500]
    per_stage = CM.prefill_stage_times(pp, s)
    assert CM.prefill_time(pp, s) == pytest.approx(per_stage.sum() + 1e-3 + 1500 * 6656 * 2 / 5e9)
    assert CM.prefill_interval(pp, s) == pytest.approx(per_stage.max())
    # decode: 2 micro-batches of 8; step = max(cycle, 2 * bottleneck); throughput ~2x one stage-at-a-time
    st = CM.decode_stage_times(pp, 8, 800)
    cycle = st.sum() + hop.time(8 * 6656 * 2)
    assert CM.decode_step_time(pp, 16, 800) == pytest.approx(max(cycle, 2 * st.max()))


def test_kv_bytes_and_transfer_time_with_compression() -> None:
    tokens = 1500
    nbytes = tokens * LLAMA.kv_bytes_per_token(2)  # 1.6 MB/token -> 2.4 GB (notes §3.3)
    assert nbytes == pytest.approx(2.396e9, rel=1e-3)
    link = Link(bandwidth=40e9 / 8, latency=2e-4)
    assert kv_transfer_time(nbytes, link) == pytest.approx(0.4794, rel=1e-3)  # FP16 at 40 Gbps: ~0.48 s
    assert CM.kv_transfer_time(tokens, link) == pytest.approx(2e-4 + nbytes / KV_4BIT_COMPRESSION / 5e9)
    assert KV_4BIT_COMPRESSION == pytest.approx(3.556, rel=1e-3)


def test_memory_limits() -> None:
    one = _one_stage()  # 65 GB of weights on one 48 GB device
    assert CM.max_kv_tokens(one) < 0 and not CM.memory_fits(one)
    two = _one_stage(tp=2, bw=20e9)
    free = 2 * 48e9 - LLAMA.weight_bytes(2) - CM.activation_bytes()
    assert CM.max_kv_tokens(two) == int(free / (60 * LLAMA.kv_bytes_per_token_layer(2)))
    assert CM.memory_fits(two, 10_000) and not CM.memory_fits(two, 100_000)


def test_catalog_constants_apply_efficiencies() -> None:
    cm = CostModel.from_catalog(LLAMA)
    a40 = cm.constants("a40")
    assert a40.flops == pytest.approx(149.7e12 * 0.6) and a40.mem_bw == pytest.approx(696e9 * 0.8)
    with pytest.raises(Exception, match="calibrate"):
        cm.constants("cpu")


def test_calibrate_recovers_constants_and_predicts_held_out() -> None:
    smol = ModelSpec.from_catalog("smollm2-135m")
    truth = DeviceConstants(flops=2e11, mem_bw=2e10, memory_bytes=16e9, overhead_s=3e-3)
    true_cm = CostModel(model=smol, devices={"cpu": truth})
    rng = np.random.default_rng(0)
    grid = [("prefill", b, s) for b in (1, 2, 4) for s in (32, 128, 512)] + \
           [("decode", b, s) for b in (1, 4, 16, 64) for s in (64, 256, 1024)]
    shapes = [ProfileSample(phase=p, gpu_type="cpu", batch_size=b, seq_len=s, seconds=1.0) for p, b, s in grid]
    samples = [ProfileSample(phase=x.phase, gpu_type="cpu", batch_size=x.batch_size, seq_len=x.seq_len,
                             seconds=predict(true_cm, x) * (1 + 0.02 * rng.standard_normal())) for x in shapes]
    held_out, train = samples[::4], [s for k, s in enumerate(samples) if k % 4]
    start = CostModel(model=smol, devices={})
    fitted = start.calibrate(train, memory_gib=16)
    c = fitted.constants("cpu")
    assert c.flops == pytest.approx(truth.flops, rel=0.1)
    assert c.mem_bw == pytest.approx(truth.mem_bw, rel=0.1)
    errors = [abs(predict(fitted, s) - s.seconds) / s.seconds for s in held_out]
    assert max(errors) < 0.08


def test_kv_read_term_adds_serial_attention_time() -> None:
    # CPU-style attention: KV bytes read at A bytes/s on top of the roofline (divided over TP like the rest)
    a = 4e9
    cm = CostModel(model=LLAMA, devices={"x": DeviceConstants(flops=F, mem_bw=B, memory_bytes=48e9, kv_read_bw=a)})
    ctx, batch = 1000, 4
    kv = batch * ctx * LLAMA.kv_bytes_per_token(2)
    nbytes = LLAMA.param_count * 2 + kv
    assert cm.decode_step_time(_one_stage(), batch, ctx) == pytest.approx(nbytes / B + kv / a, rel=1e-9)
    # prefill reads (gathers) the prompt's own KV once: s tokens
    s = 2000
    extra = s * LLAMA.kv_bytes_per_token(2) / a
    assert cm.prefill_time(_one_stage(), [s]) == pytest.approx(CM.prefill_time(_one_stage(), [s]) + extra, rel=1e-9)
    tp2 = cm.decode_step_time(_one_stage(tp=2, bw=math.inf), batch, ctx)
    assert tp2 == pytest.approx((nbytes / B + kv / a) / 2, rel=1e-9)
    assert CM.constants("x").kv_read_bw == math.inf  # catalog devices: no extra term


def _synthetic(truth: DeviceConstants, grid: list[tuple[str, int, int]], noise: float) -> list[ProfileSample]:
    true_cm = CostModel(model=ModelSpec.from_catalog("smollm2-135m"), devices={"cpu": truth})
    rng = np.random.default_rng(0)
    shapes = [ProfileSample(phase=p, gpu_type="cpu", batch_size=b, seq_len=s, seconds=1.0) for p, b, s in grid]
    return [ProfileSample(phase=x.phase, gpu_type="cpu", batch_size=x.batch_size, seq_len=x.seq_len,
                          seconds=predict(true_cm, x) * (1 + noise * rng.standard_normal())) for x in shapes]


def test_calibrate_recovers_kv_read_bandwidth() -> None:
    truth = DeviceConstants(flops=3e11, mem_bw=4e10, memory_bytes=16e9, overhead_s=8e-3, kv_read_bw=4e9)
    grid = [("prefill", b, s) for b in (1, 2, 4) for s in (32, 128, 256)] + \
           [("decode", b, s) for b in (1, 4, 16) for s in (32, 128, 256)]
    samples = _synthetic(truth, grid, noise=0.01)
    fitted = CostModel(model=ModelSpec.from_catalog("smollm2-135m"), devices={}).calibrate(samples[0::2], memory_gib=16)
    c = fitted.constants("cpu")
    assert c.kv_read_bw == pytest.approx(truth.kv_read_bw, rel=0.15)
    errors = [abs(predict(fitted, s) - s.seconds) / s.seconds for s in samples[1::2]]
    assert max(errors) < 0.05


def test_calibrate_keeps_kv_term_off_when_the_profile_cannot_separate_it() -> None:
    truth = DeviceConstants(flops=3e11, mem_bw=4e10, memory_bytes=16e9, overhead_s=8e-3)
    samples = _synthetic(truth, [("prefill", 1, 64), ("prefill", 1, 256), ("decode", 1, 64), ("decode", 8, 64)], 0.0)
    fitted = CostModel(model=ModelSpec.from_catalog("smollm2-135m"), devices={}).calibrate(samples, memory_gib=16)
    assert fitted.constants("cpu").kv_read_bw == math.inf


def test_calibrate_rejects_thin_profiles() -> None:
    with pytest.raises(Exception, match="need >= 3"):
        CM.calibrate([ProfileSample(phase="decode", gpu_type="x", batch_size=1, seq_len=1, seconds=0.1)])


def test_vectorised_decode_step_times_equal_the_scalar_ones() -> None:
    # The simulator's hot path keeps the scalar `decode_step_time`; profiles tabulate with `decode_step_times`.
    hop = Link(bandwidth=5e9, latency=1e-3)
    stages = (StageConfig(gpu_type="x", device_ids=("a",), num_layers=25),
              StageConfig(gpu_type="x", device_ids=("b",), num_layers=35))
    batches = np.array([1, 2, 3, 7, 64, 299])
    for config in (_one_stage(), _one_stage(tp=2, bw=50e9, lat=5e-6), ReplicaConfig(stages=stages, hops=(hop,))):
        scalar = np.array([CM.decode_step_time(config, int(b), 700.0) for b in batches])
        assert np.array_equal(CM.decode_step_times(config, batches, 700.0), scalar)
