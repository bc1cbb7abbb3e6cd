"""SimEngine: real scheduling, cost-model step times, placeholder tokens, shape-only KV handoff."""

from __future__ import annotations

import pytest

from planner import CostModel, Link, ModelSpec, ReplicaConfig, StageConfig
from thunder.engine import ConfigError, SamplingParams
from thunder.engine.sim_engine import PLACEHOLDER_TEXT, SimEngine, SimEngineConfig, SimKV, batch_seconds

GREEDY = SamplingParams(max_tokens=8, temperature=0)


@pytest.fixture(scope="module")
def cost_model() -> CostModel:
    return CostModel.from_catalog(ModelSpec.from_catalog("llama-30b"))


def engine(**overrides: object) -> SimEngine:
    return SimEngine(SimEngineConfig(**overrides))  # type: ignore[arg-type]


def prompt(n: int, base: int = 100) -> list[int]:
    return [base + i for i in range(n)]


def run(e: SimEngine) -> list[tuple[float, list]]:
    steps = []
    while e.has_unfinished():
        outs = e.step()
        steps.append((e.last_step_seconds, outs))
    return steps


def test_whole_prompt_prefill_costs_exactly_the_planner_prefill_time(cost_model: CostModel) -> None:
    e = engine()
    lens = [37, 120, 300]
    for i, n in enumerate(lens):
        e.add_request(f"r{i}", prompt(n, 100 + 1000 * i), GREEDY)
    e.step()
    assert e.last_step_seconds == pytest.approx(cost_model.prefill_time(e.replica, lens), rel=1e-12)
    assert e.stats().running == 3


def test_pure_decode_step_costs_the_planner_decode_step_time(cost_model: CostModel) -> None:
    e = engine()
    e.add_request("a", prompt(10), GREEDY)
    e.add_request("b", prompt(30, 5000), GREEDY)
    e.step()  # prefill both; each emits its first token
    e.step()  # both decode: KV lengths after the step are 10+1 and 30+1
    expect = cost_model.decode_step_time(e.replica, 2, (11 + 31) / 2)
    assert e.last_step_seconds == pytest.approx(expect, rel=1e-12)
    assert e.busy_seconds > e.last_step_seconds > 0


def test_pipeline_replica_decode_uses_the_planners_micro_batching(cost_model: CostModel) -> None:
    pp = ReplicaConfig(
        stages=(
            StageConfig(gpu_type="a100-80gb-sxm", device_ids=("x/0",), num_layers=36),
            StageConfig(gpu_type="a40", device_ids=("y/0",), num_layers=24),
        ),
        hops=(Link(bandwidth=5e9 / 8, latency=1e-3),),
    )
    e = engine(replica_config=pp.to_dict())
    assert e.replica == pp
    for i in range(4):
        e.add_request(f"r{i}", prompt(16, 100 + 100 * i), GREEDY)
    e.step()
    e.step()
    assert e.last_step_seconds == pytest.approx(cost_model.decode_step_time(pp, 4, 17), rel=1e-12)


def test_mixed_batch_is_one_pass_costing_more_than_its_decodes_and_less_than_both_apart(
    cost_model: CostModel,
) -> None:
    r = ReplicaConfig.single("a100-80gb-sxm", ("d",), 60)
    decodes = [200] * 8
    mixed = batch_seconds(cost_model, r, chunks=[(0, 256, True)], decode_contexts=decodes)
    alone = cost_model.decode_step_time(r, 8, 200)
    prefill = cost_model.prefill_time(r, [256])
    assert alone < mixed < alone + prefill  # the weights are read once for both
    assert batch_seconds(cost_model, r, chunks=[], decode_contexts=[]) == 0.0


def test_later_chunks_of_a_prompt_pay_for_attention_over_the_cached_prefix(cost_model: CostModel) -> None:
    r = ReplicaConfig.single("a40", ("d",), 60)
    first = batch_seconds(cost_model, r, chunks=[(0, 512, False)], decode_contexts=[])
    later = batch_seconds(cost_model, r, chunks=[(1536, 512, True)], decode_contexts=[])
    assert later > first


def test_placeholder_tokens_are_deterministic_and_run_to_max_tokens_without_eos() -> None:
    e = engine()
    params = SamplingParams(max_tokens=25, temperature=0.8, seed=None)
    a, b = e.generate([prompt(12), prompt(40, 3000)], params)
    assert a.token_ids == b.token_ids and len(a.token_ids) == 25
    assert a.finish_reason == b.finish_reason == "length"
    cycle = len(e.placeholder)
    assert a.token_ids[:cycle] == e.placeholder and a.token_ids[cycle] == e.placeholder[0]
    assert a.text.startswith(PLACEHOLDER_TEXT + PLACEHOLDER_TEXT)
    assert e.tokenizer.eos_token_id not in a.token_ids


def test_stop_string_and_stop_token_end_a_request_early() -> None:
    e = engine()
    by_text, by_id = e.generate(
        [prompt(8), prompt(8, 900)],
        [
            SamplingParams(max_tokens=50, stop=["lazy"]),
            SamplingParams(max_tokens=50, stop_token_ids=[e.placeholder[2]]),
        ],
    )
    assert by_text.finish_reason == "stop" and by_text.text == " The quick brown fox jumps over the "
    assert by_id.finish_reason == "stop" and by_id.token_ids == e.placeholder[:3]


def test_chunked_prefill_splits_a_long_prompt_under_the_token_budget() -> None:
    e = engine(max_num_batched_tokens=256)
    e.add_request("long", prompt(1000), SamplingParams(max_tokens=2))
    steps = run(e)
    first_token_step = next(i for i, (_, outs) in enumerate(steps) if outs and outs[0].new_token_ids)
    assert first_token_step == 3  # ceil(1000 / 256) = 4 prefill steps
    assert all(seconds > 0 for seconds, _ in steps)


def test_preemption_by_recompute_when_the_kv_pool_is_small_and_everything_still_finishes() -> None:
    e = engine(kv_capacity_tokens=64 * 16, max_num_seqs=64)
    outs = e.generate([prompt(100, 100 + 200 * i) for i in range(12)], SamplingParams(max_tokens=40))
    assert e.stats().num_preemptions > 0
    assert all(len(c.token_ids) == 40 and c.finish_reason == "length" for c in outs)
    assert e.stats().kv_pages_used == 0


def test_kv_capacity_defaults_to_the_cost_models_memory_model(cost_model: CostModel) -> None:
    e = engine(gpu_type="a100-80gb-sxm")
    cap = cost_model.max_kv_tokens(e.replica)
    assert e.stats().kv_pages_total == cap // 16
    assert e.max_model_len == min(2048, (cap // 16) * 16)


def test_disaggregated_prefill_export_and_import_continue_the_same_stream(cost_model: CostModel) -> None:
    params = SamplingParams(max_tokens=12)
    colocated = engine().generate([prompt(33)], params)[0]

    pre, dec = engine(), engine(gpu_type="h100-80gb-sxm")
    pre.add_request("r", prompt(33), params, prefill_only=True)
    (first,) = pre.step()
    assert first.finish_reason == "prefill_done" and first.new_token_ids == colocated.token_ids[:1]
    kv = pre.export_kv("r")
    assert isinstance(kv, SimKV) and kv.shape == (60, 2, 33, 52, 128)
    assert kv.nbytes == 33 * cost_model.kv_bytes_per_token
    assert pre.stats().held == 1
    pre.release("r")
    assert pre.stats().held == 0 and pre.stats().kv_pages_used == 0

    dec.add_request("r", prompt(33), params, kv=kv, first_token=first.new_token_ids[0])
    rest = [t for _, outs in run(dec) for o in outs for t in o.new_token_ids]
    assert first.new_token_ids + tuple(rest) == colocated.token_ids
    assert dec.stats().num_preemptions == 0 and dec.stats().prefix_cache_hit_tokens == 0


def test_import_rejects_kv_of_the_wrong_shape_and_export_needs_a_held_request() -> None:
    e = engine()
    with pytest.raises(ValueError, match="expected"):
        e.add_request("r", prompt(10), GREEDY, kv=SimKV((60, 2, 9, 52, 128)), first_token=5)
    with pytest.raises(KeyError, match="holds no KV"):
        e.export_kv("nobody")


def test_abort_frees_pages_and_reports_with_the_next_step() -> None:
    e = engine()
    e.add_request("r", prompt(64), SamplingParams(max_tokens=100))
    e.step()
    assert e.stats().kv_pages_used > 0
    e.abort("r")
    outs = e.step()
    assert [(o.request_id, o.finish_reason) for o in outs] == [("r", "abort")]
    assert e.stats().kv_pages_used == 0 and not e.has_unfinished()
    assert e.last_step_seconds == 0.0


def test_from_spec_reads_the_runtimes_engine_spec() -> None:
    from thunder.runtime.messages import EngineSpec

    pp = ReplicaConfig.single("a40", ("n/0", "n/1"), 60, tp_link=Link(bandwidth=2e10, latency=5e-6))
    e = SimEngine.from_spec(
        EngineSpec(kind="sim", model="llama-30b", gpu_type="a40", replica_config=pp.to_dict(), max_num_seqs=7)
    )
    assert e.replica == pp and e.scheduler.max_num_seqs == 7


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"gpu_type": "tpu-v9"}, "tpu-v9"),
        ({"gpu_type": "t4"}, "does not fit"),
        ({"model": "gpt-17"}, "gpt-17"),
        ({"replica_config": ReplicaConfig.single("a40", ("d",), 30).to_dict()}, "30 layers"),
        ({"page_size": 12}, "power of two"),
    ],
)
def test_bad_configs_name_the_value_and_the_fix(overrides: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        engine(**overrides)
