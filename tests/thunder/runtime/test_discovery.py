"""Discovery of this machine as a cluster, CPU calibration from a profile, and planning it (1P + 1D)."""

from __future__ import annotations

import pytest

from planner import SpecError
from thunder.runtime.discovery import CPU_TYPE, catalog_key_for, discover_cluster
from thunder.runtime.messages import ProfilePoint
from thunder.runtime.planning import as_colocated, calibrated_cost_model, make_plan, model_spec_for


@pytest.mark.parametrize(("name", "key"), [
    ("NVIDIA H100 80GB HBM3", "h100-80gb-sxm"), ("NVIDIA H100 PCIe", "h100-pcie"),
    ("NVIDIA A100-SXM4-80GB", "a100-80gb-sxm"), ("NVIDIA A100-PCIE-40GB", "a100-40gb"),
    ("NVIDIA A40", "a40"), ("NVIDIA GeForce RTX 3090 Ti", "rtx-3090-ti"), ("NVIDIA L4", "l4"),
    ("NVIDIA L40S", "l40s"), ("NVIDIA A10G", "a10g"), ("Tesla T4", "t4"), ("NVIDIA H200", None),
])
def test_cuda_names_map_to_catalog_keys(name: str, key: str | None) -> None:
    assert catalog_key_for(name) == key


def test_cpu_discovery_makes_one_node_of_cpu_workers() -> None:
    cluster, local = discover_cluster(3, use_cuda=False)
    assert [d.id for d in cluster.devices] == ["local/0", "local/1", "local/2"]
    assert {d.gpu_type for d in cluster.devices} == {CPU_TYPE}
    assert [(d.device_id, d.kind, d.index, d.needs_profile) for d in local] == [
        ("local/0", "cpu", 0, True), ("local/1", "cpu", 1, True), ("local/2", "cpu", 2, True)]
    assert cluster.price_per_hour == 0.0
    with pytest.raises(ValueError, match="devices=0"):
        discover_cluster(0, use_cuda=False)


# Illustrative step times of the shape `profile_engine` returns (not a measurement): prefill grows with the
# prompt, decode with the batch, and a fixed per-step overhead dominates small steps.
PROFILE = [ProfilePoint("prefill", 1, 16, 0.05), ProfilePoint("prefill", 1, 64, 0.12),
           ProfilePoint("prefill", 1, 192, 0.33), ProfilePoint("decode", 1, 49, 0.030),
           ProfilePoint("decode", 4, 49, 0.034), ProfilePoint("decode", 16, 49, 0.048)]


def test_profile_calibrates_cpu_and_plans_one_prefill_one_decode() -> None:
    cluster, _ = discover_cluster(2, use_cuda=False)
    model = model_spec_for("smollm2-135m-instruct")
    assert model.num_layers == 30 and model.num_kv_heads == 3
    cost_model = calibrated_cost_model(model, cluster, {CPU_TYPE: PROFILE})
    assert cost_model.devices[CPU_TYPE] != calibrated_cost_model(model, cluster, {}).devices[CPU_TYPE]
    config = _single(cluster)
    for p in PROFILE:  # the fitted roofline reproduces every profiled step within 50%
        predicted = (cost_model.prefill_time(config, [p.seq_len]) if p.phase == "prefill"
                     else cost_model.decode_step_time(config, p.batch_size, p.seq_len))
        assert predicted == pytest.approx(p.seconds, rel=0.5), p
    plan = make_plan(cluster, model, cost_model=cost_model)
    assert sorted(g.phase for g in plan.groups) == ["decode", "prefill"]
    prefill = plan.groups_in("prefill")[0].id
    decode = plan.groups_in("decode")[0].id
    assert plan.routing.arrival == {prefill: 1.0} and plan.routing.handoff == {prefill: {decode: 1.0}}
    colocated = as_colocated(plan)
    assert [g.phase for g in colocated.groups] == ["colocated", "colocated"]
    assert sum(colocated.routing.arrival.values()) == pytest.approx(1.0) and not colocated.routing.handoff
    with pytest.raises(SpecError, match="mode="):
        make_plan(cluster, model, cost_model=cost_model, mode="both")


def _single(cluster):  # type: ignore[no-untyped-def]
    from planner import ReplicaConfig

    return ReplicaConfig.single(CPU_TYPE, (cluster.devices[0].id,), 30)
