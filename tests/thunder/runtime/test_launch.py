"""How `start_runtime` maps a plan onto this machine's devices (one device actor per group, led by its first device)."""

from __future__ import annotations

import dataclasses
import os

import pytest

from planner import GroupPlan, Plan, ReplicaConfig
from tests.thunder.runtime.test_discovery import PROFILE
from thunder.engine.config import ConfigError
from thunder.runtime.config import RuntimeConfig
from thunder.runtime.discovery import CPU_TYPE, discover_cluster
from thunder.runtime.launch import _slots
from thunder.runtime.planning import calibrated_cost_model, make_plan, model_spec_for


@pytest.fixture(scope="module")
def planned() -> tuple[Plan, list]:  # type: ignore[type-arg]
    cluster, local = discover_cluster(2, use_cuda=False)
    model = model_spec_for("smollm2-135m-instruct")
    plan = make_plan(cluster, model, cost_model=calibrated_cost_model(model, cluster, {CPU_TYPE: PROFILE}))
    return plan, local


def test_each_group_gets_its_leader_device_and_role(planned) -> None:  # type: ignore[no-untyped-def]
    plan, local = planned
    config = RuntimeConfig(threads_per_device=3, kv_cache_gib=0.5)
    slots = _slots(config, plan, local)
    assert [(s.name, s.role, s.device.device_id) for s in slots] == [
        (g.id, g.phase, g.device_ids[0]) for g in plan.groups]
    spec = slots[0].spec
    assert (spec.kind, spec.threads, spec.kv_cache_gib, spec.gpu_type) == ("torch", 3, 0.5, CPU_TYPE)
    assert spec.replica_config == plan.groups[0].config.to_dict()
    assert RuntimeConfig().threads_for(2) >= 1


def test_a_tp_group_is_served_by_its_devices_and_a_foreign_device_refused(planned) -> None:  # type: ignore[no-untyped-def]
    plan, local = planned
    tp2 = GroupPlan(id="g9", phase="prefill", config=ReplicaConfig.single(CPU_TYPE, ("local/0", "local/1"), 30))
    (slot,) = _slots(RuntimeConfig(), dataclasses.replace(plan, groups=(tp2,)), local)
    assert [d.device_id for d in slot.stage_devices] == ["local/0", "local/1"]
    away = GroupPlan(id="g8", phase="prefill", config=ReplicaConfig.single(CPU_TYPE, ("other/0",), 30))
    with pytest.raises(ConfigError, match="not on this machine"):
        _slots(RuntimeConfig(), dataclasses.replace(plan, groups=(away,)), local)


def test_decode_first_gives_decode_the_cores_and_prefill_a_lower_priority(planned) -> None:  # type: ignore[no-untyped-def]
    plan, local = planned
    p, d = (GroupPlan(id=f"g{i}", phase=ph, config=ReplicaConfig.single(CPU_TYPE, (f"local/{i}",), 30))
            for i, ph in enumerate(("prefill", "decode")))
    disagg = dataclasses.replace(plan, groups=(p, d))
    slots = _slots(RuntimeConfig(prefill_nice=10), disagg, local)
    cores = os.cpu_count() or 1
    assert [(s.role, s.spec.threads, s.nice) for s in slots] == [
        ("prefill", max(1, cores // 2), 10), ("decode", cores, 0)]
    even = _slots(RuntimeConfig(cpu_policy="even", threads_per_device=3), disagg, local)
    assert [(s.spec.threads, s.nice) for s in even] == [(3, 0), (3, 0)]
    with pytest.raises(ConfigError, match="cpu_policy='fast'"):
        RuntimeConfig(cpu_policy="fast")
