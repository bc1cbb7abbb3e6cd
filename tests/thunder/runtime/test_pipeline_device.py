"""Plan groups spanning several CPU devices, served for real through `AsyncLLM` (one OS process per device):
PP=2 with the plan's non-uniform layer split, TP=2 over gloo, and disaggregated PP=2 prefill -> single-device
decode and the reverse (roles flipped live) — greedy output EQUALS the single-device engine's (fp32, fp32 KV on
the wire), and the 4-bit wire works through the same groups."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import pytest

from planner import GroupPlan, Link, Plan, ReplicaConfig, Routing, StageConfig
from tests.thunder.runtime.test_discovery import PROFILE
from thunder import AsyncLLM
from thunder.engine import EngineConfig, LLMEngine, SamplingParams
from thunder.engine.config import ConfigError
from thunder.runtime.config import RuntimeConfig
from thunder.runtime.discovery import CPU_TYPE, discover_cluster
from thunder.runtime.launch import _slots
from thunder.runtime.messages import GetStats
from thunder.runtime.planning import calibrated_cost_model, make_plan, model_spec_for

PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time,"]
SPLIT = (13, 17)  # non-uniform: stage 0 holds layers [0, 13), stage 1 [13, 30)


def _pp_group(split: tuple[int, ...], phase: str = "colocated", tp0: int = 1) -> GroupPlan:
    ids = iter(f"local/{i}" for i in range(len(split) + tp0 - 1))
    stages = tuple(
        StageConfig(
            gpu_type=CPU_TYPE, device_ids=tuple(next(ids) for _ in range(tp0 if k == 0 else 1)), num_layers=n
        )
        for k, n in enumerate(split)
    )
    hops = tuple(Link(bandwidth=math.inf) for _ in split[1:])
    return GroupPlan(id="g0", phase=phase, config=ReplicaConfig(stages=stages, hops=hops))


@pytest.fixture(scope="module")
def base_plan() -> Plan:
    cluster, _ = discover_cluster(2, use_cuda=False)
    model = model_spec_for("smollm2-135m-instruct")
    return make_plan(cluster, model, cost_model=calibrated_cost_model(model, cluster, {CPU_TYPE: PROFILE}))


def _with_group(plan: Plan, group: GroupPlan) -> Plan:
    return dataclasses.replace(
        plan, groups=(group,), routing=Routing(arrival={group.id: 1.0}), group_links={}, unused_device_ids=()
    )


async def test_a_two_device_plan_group_serves_pp2_with_greedy_output_equal_to_one_device(
    base_plan: Plan, tmp_path: Path
) -> None:
    params = SamplingParams(max_tokens=12, temperature=0)
    single = LLMEngine(EngineConfig(dtype="float32", kv_cache_gib=0.1, num_threads=1))
    expected = [list(c.token_ids) for c in single.generate(PROMPTS, params)]
    del single
    plan_file = tmp_path / "pp2.json"
    _with_group(base_plan, _pp_group(SPLIT)).save(plan_file)
    async with await AsyncLLM.start(
        plan=str(plan_file),
        devices=2,
        mode="colocated",
        dtype="float32",
        kv_cache_gib=0.1,
        threads_per_device=1,
    ) as llm:
        info = llm.runtime.infos["g0"]
        assert [(a, b) for a, b, _ in info.stages] == [(0, 13), (13, 30)]
        pids = {pid for _, _, pid in info.stages}
        assert info.stages[0][2] == info.pid and len(pids | {os.getpid()}) == 3  # leader runs stage 0
        got = [await llm.generate(p, max_tokens=12, temperature=0) for p in PROMPTS]
        assert [r.token_ids for r in got] == expected


def _expected(max_tokens: int = 12) -> list[list[int]]:
    single = LLMEngine(EngineConfig(dtype="float32", kv_cache_gib=0.1, num_threads=1))
    params = SamplingParams(max_tokens=max_tokens, temperature=0)
    return [list(c.token_ids) for c in single.generate(PROMPTS, params)]


@pytest.mark.slow
async def test_a_tp2_plan_group_serves_with_greedy_output_equal_to_one_device(
    base_plan: Plan, tmp_path: Path
) -> None:
    expected = _expected()
    tp2 = GroupPlan(
        id="g0", phase="colocated", config=ReplicaConfig.single(CPU_TYPE, ("local/0", "local/1"), 30)
    )
    plan_file = tmp_path / "tp2.json"
    _with_group(base_plan, tp2).save(plan_file)
    async with await AsyncLLM.start(
        plan=str(plan_file), devices=2, dtype="float32", kv_cache_gib=0.1, threads_per_device=1
    ) as llm:
        info = llm.runtime.infos["g0"]
        assert [(a, b) for a, b, _ in info.stages] == [(0, 30), (0, 30)]  # two TP ranks of all 30 layers
        assert len({pid for _, _, pid in info.stages} | {os.getpid()}) == 3
        got = [await llm.generate(p, max_tokens=12, temperature=0) for p in PROMPTS]
        assert [r.token_ids for r in got] == expected


def _disaggregated(base_plan: Plan, pp_phase: str) -> Plan:
    """g0: PP=2 (13 + 17 layers, local/0-1); g1: one device (local/2); g0 has phase ``pp_phase``."""
    pp = _pp_group(SPLIT, phase=pp_phase)
    one = GroupPlan(
        id="g1",
        phase="decode" if pp_phase == "prefill" else "prefill",
        config=ReplicaConfig.single(CPU_TYPE, ("local/2",), 30),
    )
    prefill, decode = ("g0", "g1") if pp_phase == "prefill" else ("g1", "g0")
    routing = Routing(arrival={prefill: 1.0}, handoff={prefill: {decode: 1.0}})
    return dataclasses.replace(
        base_plan, groups=(pp, one), routing=routing, group_links={}, unused_device_ids=()
    )


@pytest.mark.slow
async def test_kv_handoff_out_of_and_into_a_pipelined_group(base_plan: Plan, tmp_path: Path) -> None:
    expected = _expected()
    plan_file = tmp_path / "pp-prefill.json"
    _disaggregated(base_plan, "prefill").save(plan_file)
    async with await AsyncLLM.start(
        plan=str(plan_file),
        devices=3,
        dtype="float32",
        kv_cache_gib=0.1,
        threads_per_device=1,
        kv_transfer_dtype="fp32",
    ) as llm:
        runtime = llm.runtime
        got = [await llm.generate(p, max_tokens=12, temperature=0) for p in PROMPTS]
        assert [r.token_ids for r in got] == expected  # PP=2 prefill -> single-device decode
        await runtime.apply_plan(_disaggregated(base_plan, "decode"))  # roles flip; no reload
        got = [await llm.generate(p, max_tokens=12, temperature=0) for p in PROMPTS]
        assert [r.token_ids for r in got] == expected  # single-device prefill -> PP=2 decode
        await runtime.set_kv_transfer_dtype("int4")
        got = [await llm.generate(p, max_tokens=12, temperature=0, ignore_eos=True) for p in PROMPTS]
        assert [len(r.token_ids) for r in got] == [12] * len(PROMPTS)
        assert [r.token_ids[0] for r in got] == [e[0] for e in expected]  # the first token: prefill's
        stats = {g: await runtime.devices[g].ask(GetStats()) for g in ("g0", "g1")}
        assert all(s.kv_pages_used == 0 and s.held == 0 for s in stats.values())  # pages freed both sides


def test_plan_groups_are_mapped_to_their_devices_and_mixed_kinds_refused(base_plan: Plan) -> None:
    _, local = discover_cluster(3, use_cuda=False)
    config = RuntimeConfig()
    slots = _slots(config, _with_group(base_plan, _pp_group(SPLIT)), local)
    assert [d.device_id for d in slots[0].stage_devices] == ["local/0", "local/1"]
    assert slots[0].spec.replica_config["stages"][1]["num_layers"] == 17
    slots = _slots(config, _with_group(base_plan, _pp_group(SPLIT, phase="prefill", tp0=2)), local)
    assert [d.device_id for d in slots[0].stage_devices] == ["local/0", "local/1", "local/2"]
    with pytest.raises(ConfigError, match=r"stage 0 is tensor-parallel over 2 devices but the model has 1 KV"):
        _slots(config, _with_group(base_plan, _pp_group(SPLIT, tp0=2)), local, kv_heads=1)
    gpu = [dataclasses.replace(local[0], kind="cuda"), *local[1:]]
    with pytest.raises(ConfigError, match=r"mixes device kinds \['cpu', 'cuda'\]"):
        _slots(config, _with_group(base_plan, _pp_group(SPLIT)), gpu)
    with pytest.raises(ConfigError, match=r"\['local/1'\] of group g0 are not on this machine"):
        _slots(config, _with_group(base_plan, _pp_group(SPLIT)), local[:1])
