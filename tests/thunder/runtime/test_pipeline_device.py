"""A plan group spanning two CPU devices is served as PP=2: `AsyncLLM` starts the group's leader (stage 0 plus
the `PipelineEngine`) and one more stage process, with the plan's non-uniform layer split — greedy output EQUALS
the single-device engine's. What a pipelined group cannot serve yet is refused with a clear `ConfigError`."""

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


def test_what_a_pipelined_group_cannot_serve_yet_is_refused(base_plan: Plan) -> None:
    _, local = discover_cluster(3, use_cuda=False)
    config = RuntimeConfig()
    slots = _slots(config, _with_group(base_plan, _pp_group(SPLIT)), local)
    assert [d.device_id for d in slots[0].stage_devices] == ["local/0", "local/1"]
    assert slots[0].spec.replica_config["stages"][1]["num_layers"] == 17
    with pytest.raises(ConfigError, match="phase 'prefill': KV handoff into or out of a pipelined replica"):
        _slots(config, _with_group(base_plan, _pp_group(SPLIT, phase="prefill")), local)
    with pytest.raises(ConfigError, match=r"\(TP=2\); TP inside a served stage is not supported"):
        _slots(config, _with_group(base_plan, _pp_group(SPLIT, tp0=2)), local)
    with pytest.raises(ConfigError, match=r"\['local/1'\] of group g0 are not on this machine"):
        _slots(config, _with_group(base_plan, _pp_group(SPLIT)), local[:1])
