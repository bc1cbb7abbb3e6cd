"""Planning for a deployment: the model's spec, the cluster, the calibrated cost model and the `Plan`.

`thunder run` with no arguments plans the discovered machine; `--cluster` plans a cluster file; `--plan`
skips planning. `--mode colocated` serves the same replicas with prefill and decode together.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from planner import (
    Budget,
    Cluster,
    CostModel,
    ModelSpec,
    PickSettings,
    Plan,
    PlanError,
    Routing,
    SpecError,
    Workload,
)
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
    "servable_workload",
]

MODES = ("disaggregated", "colocated")
PLANNING_BUDGET_USD_PER_HOUR = 1e6
"""Discovered devices have no price (0 USD/h), so the budget never binds; cluster files bring their prices."""
SERVABLE_LOAD = 0.5
"""Default planning rate as a share of the SLO-feasible capacity when the trace's rate exceeds that capacity."""
MAX_SLO_SCALE = 1024.0


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
    rate: float | None = None,
    slo_scale: float | None = None,
) -> Plan:
    """Search a plan for `cluster` (the planner's tabu search + routing LP); `mode` colocated turns its
    replicas into colocated ones with arrivals split evenly.

    The workload is first fitted to what `cluster` can serve (`servable_workload`): `rate` (req/s) and
    `slo_scale` (deadline multiplier) override what that would choose.
    """
    if mode not in MODES:
        raise SpecError(f"mode={mode!r}: choose one of {MODES}")
    budget = _budget(cluster)
    workload = servable_workload(
        cluster,
        model,
        workload or planning_workload(model),
        cost_model=cost_model,
        rate=rate,
        slo_scale=slo_scale,
    )
    found = plan_cluster(cluster, model, workload, budget, seed=seed, cost_model=cost_model)
    return as_colocated(found) if mode == "colocated" else found


def servable_workload(
    cluster: Cluster,
    model: ModelSpec,
    workload: Workload,
    *,
    cost_model: CostModel,
    rate: float | None = None,
    slo_scale: float | None = None,
) -> Workload:
    """`workload` at a rate and deadlines `cluster` can serve, so a plan for it predicts real attainment.

    - `slo_scale` None: the trace's deadlines (made for 30B-class models on GPUs) are doubled until the cost
      model gives the best quick plan a non-zero SLO-feasible capacity (a CPU prefills a long prompt for
      seconds), at most `MAX_SLO_SCALE`;
    - `rate` None: the trace's own rate, or `SERVABLE_LOAD` x that capacity when the trace's rate exceeds it
      (the paper's clusters keep their trace rate; a CPU gets a rate it can serve).
    """
    if rate is not None and not rate > 0:
        raise SpecError(f"rate={rate}: must be > 0 requests/s, e.g. 0.5")
    if slo_scale is not None and not slo_scale > 0:
        raise SpecError(f"slo_scale={slo_scale}: must be > 0, e.g. 1.0 (the trace's deadlines)")
    fitted = workload.with_rate(rate) if rate is not None else workload
    if slo_scale is not None:
        fitted = fitted.with_slo_scale(slo_scale)
    else:
        while _capacity(cluster, model, fitted, cost_model) <= 0 and fitted.slo_scale < MAX_SLO_SCALE:
            fitted = fitted.with_slo_scale(fitted.slo_scale * 2)
    if rate is None:
        capacity = _capacity(cluster, model, fitted, cost_model)
        if 0 < capacity < fitted.rate:
            fitted = fitted.with_rate(SERVABLE_LOAD * capacity)
    return fitted


def _capacity(cluster: Cluster, model: ModelSpec, workload: Workload, cost_model: CostModel) -> float:
    """SLO-feasible capacity (req/s) of the analytically best plan (no simulated pick: quick)."""
    try:
        found = plan_cluster(
            cluster, model, workload, _budget(cluster), cost_model=cost_model, pick=PickSettings(candidates=1)
        )
    except PlanError:
        return 0.0
    return float(found.prediction.capacity_rps)


def _budget(cluster: Cluster) -> Budget:
    return Budget(usd_per_hour=max(cluster.price_per_hour, PLANNING_BUDGET_USD_PER_HOUR))


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
