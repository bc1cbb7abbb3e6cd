"""Throughput bounds: node slices, bound ordering, and no simulated plan beating the bound."""

from __future__ import annotations

from pathlib import Path

import pytest

from planner import Cluster, CostModel, ModelSpec, Workload
from planner.baselines import best_by_simulation, distserve_candidates
from planner.bounds import fluid_bound, node_slices, structured_bound
from planner.capacity import WorkloadSample
from planner.parallel import ParallelSolver

CLUSTERS = Path(__file__).resolve().parents[2] / "examples" / "clusters"


@pytest.fixture(scope="module")
def model() -> ModelSpec:
    return ModelSpec.from_catalog("llama-30b")


@pytest.fixture(scope="module")
def conversation(model: ModelSpec) -> Workload:
    return Workload.from_trace("conversation", max_context=model.max_context)


def _setup(name: str, model: ModelSpec) -> tuple[Cluster, CostModel]:
    cluster = Cluster.from_toml(CLUSTERS / f"{name}.toml")
    return cluster, CostModel.from_catalog(model, cluster.gpu_types())


def test_node_slices_are_the_smallest_equal_parts_of_a_node_that_hold_a_replica(
        model: ModelSpec, conversation: Workload) -> None:
    cloud, cm = _setup("paper-cloud-32", model)
    solver = ParallelSolver(cloud, cm, WorkloadSample.of(conversation))
    sizes = {}
    for piece in node_slices(cloud, solver):
        node = cloud.devices[piece[0]].node
        assert {cloud.devices[i].node for i in piece} == {node}
        sizes.setdefault(node, []).append(len(piece))
    # 2 x 48 GB holds LLaMA-30B's 65 GB; 24 GB cards need the whole 4-GPU node
    assert sizes["a6000-0"] == [2, 2] and sizes["a40-1"] == [2, 2] and sizes["a6000-2"] == [2]
    assert sizes["a5000-0"] == [4] and sizes["3090ti-0"] == [4]
    assert sum(len(v) for v in sizes.values()) == 13


def test_structured_bound_is_below_the_fluid_bound_and_names_a_disaggregated_plan(
        model: ModelSpec, conversation: Workload) -> None:
    a100, cm = _setup("paper-inhouse-8xa100", model)
    fluid = fluid_bound(a100, cm, conversation)
    structured = structured_bound(a100, cm, conversation)
    assert 0 < structured.rate <= fluid.rate
    assert structured.rate == min(structured.prefill_rps, structured.decode_rps)
    phases = {phase for phase, _ in structured.groups}
    assert phases == {"prefill", "decode"}
    used = [d for _, ids in structured.groups for d in ids]
    assert len(used) == len(set(used)) <= len(a100.devices)


def test_no_simulated_plan_beats_the_structured_bound(model: ModelSpec, conversation: Workload) -> None:
    a100, cm = _setup("paper-inhouse-8xa100", model)
    bound = structured_bound(a100, cm, conversation)
    best = best_by_simulation(distserve_candidates(a100, model, conversation, cm), conversation, cm, n=3000,
                              warmup=0.2)
    assert 0 < best.search.rate <= bound.rate
