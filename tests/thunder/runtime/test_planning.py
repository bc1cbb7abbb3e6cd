"""`servable_workload` / `make_plan`: the plan `thunder run` starts with is made for a rate and deadlines this
hardware can serve (a CPU prefills a long Azure prompt for seconds), unless the user names them."""

from __future__ import annotations

from pathlib import Path

import pytest

from planner import Cluster, CostModel, SpecError
from tests.thunder.runtime.test_discovery import PROFILE
from thunder.runtime.discovery import CPU_TYPE, discover_cluster
from thunder.runtime.planning import (
    SERVABLE_LOAD,
    calibrated_cost_model,
    make_plan,
    model_spec_for,
    planning_workload,
    servable_workload,
)

PAPER_8 = Path(__file__).parents[3] / "examples" / "clusters" / "paper-a40-3090ti-8.toml"


@pytest.fixture(scope="module")
def cpu() -> tuple[Cluster, object, CostModel]:
    cluster, _ = discover_cluster(2, use_cuda=False)
    model = model_spec_for("smollm2-135m-instruct")
    return cluster, model, calibrated_cost_model(model, cluster, {CPU_TYPE: PROFILE})


def test_default_plan_on_a_cpu_predicts_real_attainment(cpu) -> None:  # type: ignore[no-untyped-def]
    cluster, model, cost_model = cpu
    trace = planning_workload(model, "conversation")
    as_traced = make_plan(cluster, model, cost_model=cost_model, rate=trace.rate, slo_scale=1.0)
    assert as_traced.prediction.capacity_rps == 0.0 and as_traced.prediction.slo_attainment == 0.0
    plan = make_plan(cluster, model, cost_model=cost_model)
    assert plan.prediction.slo_attainment > 0.9
    assert plan.ttft_slo_s > trace.slo.ttft_s and plan.ttft_slo_s / plan.tpot_slo_s == pytest.approx(10.0)
    assert 0 < plan.rate < trace.rate and plan.rate <= SERVABLE_LOAD * plan.prediction.capacity_rps * 1.05


def test_named_rate_and_slo_scale_are_planned_for_as_given(cpu) -> None:  # type: ignore[no-untyped-def]
    cluster, model, cost_model = cpu
    plan = make_plan(cluster, model, cost_model=cost_model, rate=0.02, slo_scale=32.0)
    assert (plan.rate, plan.ttft_slo_s, plan.tpot_slo_s) == pytest.approx((0.02, 64.0, 6.4))
    fitted = servable_workload(cluster, model, planning_workload(model), cost_model=cost_model, rate=0.3)
    assert fitted.rate == 0.3 and fitted.slo_scale > 1.0  # only the deadlines were fitted
    with pytest.raises(SpecError, match=r"rate=0: must be > 0"):
        make_plan(cluster, model, cost_model=cost_model, rate=0)


def test_a_gpu_cluster_that_serves_the_trace_keeps_its_rate_and_deadlines() -> None:
    model = model_spec_for("llama-30b")
    cluster = Cluster.from_toml(PAPER_8)
    trace = planning_workload(model, "coding")
    fitted = servable_workload(
        cluster, model, trace, cost_model=CostModel.from_catalog(model, cluster.gpu_types())
    )
    assert (fitted.rate, fitted.slo_scale) == (trace.rate, 1.0)
