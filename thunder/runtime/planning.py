"""Planning for a deployment: the model's spec, the cluster, the calibrated cost model and the `Plan`.

`thunder run` with no arguments plans the discovered machine; `--cluster` plans a cluster file; `--plan`
skips planning. `--mode colocated` serves the same replicas with prefill and decode together.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from planner import Budget, Cluster, CostModel, ModelSpec, Plan, Routing, SpecError, Workload
from planner.planning import plan as plan_cluster
from thunder.runtime.messages import ProfilePoint
from thunder.runtime.profile import to_samples

__all__ = [
    "MODES",
    "as_colocated",
    "calibrated_cost_model",
    "make_plan",
    "model_spec_for",
    "planning_workload",
]

MODES = ("disaggregated", "colocated")
PLANNING_BUDGET_USD_PER_HOUR = 1e6
"""Discovered devices have no price (0 USD/h), so the budget never binds; cluster files bring their prices."""


def model_spec_for(model: str) -> ModelSpec:
    """`models.toml` entry (e.g. "llama-30b") if there is one, else the config.json of the local model."""
    try:
        return ModelSpec.from_catalog(model)
    except SpecError:
        from thunder.models import load_model_dir

        return ModelSpec.from_hf_config(load_model_dir(model), name=model)


def planning_workload(model: ModelSpec, trace: str = "conversation") -> Workload:
    """The Azure 2023 trace the plan is made for (lengths clipped to the model's context)."""
    return Workload.from_trace(trace, max_context=model.max_context)


def calibrated_cost_model(
    model: ModelSpec,
    cluster: Cluster,
    profiles: Mapping[str, Iterable[ProfilePoint]],
    *,
    memory_gib: Mapping[str, float] | None = None,
) -> CostModel:
    """Catalog constants for known GPU types, fitted ones for every profiled type (`CostModel.calibrate`)."""
    cost_model = CostModel.from_catalog(model, cluster.gpu_types())
    for gpu_type, points in profiles.items():
        mem = (memory_gib or {}).get(gpu_type, cluster.gpu_types()[gpu_type].memory_gib)
        cost_model = cost_model.calibrate(to_samples(points, gpu_type), memory_gib=mem)
    return cost_model


def make_plan(
    cluster: Cluster,
    model: ModelSpec,
    *,
    cost_model: CostModel,
    mode: str = "disaggregated",
    workload: Workload | None = None,
    seed: int = 0,
) -> Plan:
    """Search a plan for `cluster` (the planner's tabu search + routing LP); `mode` colocated turns its
    replicas into colocated ones with arrivals split evenly."""
    if mode not in MODES:
        raise SpecError(f"mode={mode!r}: choose one of {MODES}")
    workload = workload or planning_workload(model)
    budget = Budget(usd_per_hour=max(cluster.price_per_hour, PLANNING_BUDGET_USD_PER_HOUR))
    found = plan_cluster(cluster, model, workload, budget, seed=seed, cost_model=cost_model)
    return as_colocated(found) if mode == "colocated" else found


def as_colocated(plan: Plan) -> Plan:
    """The same replicas (devices, parallel configs), each serving prefill and decode itself."""
    groups = tuple(g.with_phase("colocated") for g in plan.groups)
    share = 1.0 / len(groups)
    return dataclasses.replace(
        plan,
        groups=groups,
        routing=Routing(arrival={g.id: share for g in groups}),
        search={**plan.search, "mode": "colocated"},
    )
