"""Baselines and ablations: each is a real configuration search on the same cost model, not a strawman."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from planner import Budget, Cluster, CostModel, ModelSpec, Workload
from planner.baselines import (
    Scored,
    best_by_simulation,
    distserve_candidates,
    hexgen_candidates,
    random_groups_system,
    thunder_systems,
    vllm_candidates,
)
from planner.baselines_colocated import colocated_profile
from planner.capacity import WorkloadSample
from planner.config import Link, ReplicaConfig

CLUSTERS = Path(__file__).resolve().parents[2] / "examples" / "clusters"
N = 300  # requests per simulation in these tests


@pytest.fixture(scope="module")
def model() -> ModelSpec:
    return ModelSpec.from_catalog("llama-30b")


@pytest.fixture(scope="module")
def a100() -> Cluster:
    return Cluster.from_toml(CLUSTERS / "paper-inhouse-8xa100.toml")


@pytest.fixture(scope="module")
def small() -> Cluster:
    return Cluster.from_toml(CLUSTERS / "paper-a40-3090ti-8.toml")


@pytest.fixture(scope="module")
def conversation(model: ModelSpec) -> Workload:
    return Workload.from_trace("conversation", max_context=model.max_context)


def test_colocated_capacity_shrinks_with_tighter_slo_and_vanishes_when_prefill_misses(
        a100: Cluster, model: ModelSpec, conversation: Workload) -> None:
    cm = CostModel.from_catalog(model, a100.gpu_types())
    ids = tuple(d.id for d in a100.devices[:2])
    config = ReplicaConfig.single("a100-80gb-sxm", ids, model.num_layers, tp_link=Link(bandwidth=300e9, latency=5e-6))
    loose = colocated_profile(cm, config, WorkloadSample.of(conversation))
    tight = colocated_profile(cm, config, WorkloadSample.of(conversation.with_slo_scale(0.2)))
    hopeless = colocated_profile(cm, config, WorkloadSample.of(conversation.with_slo_scale(0.01)))
    assert loose.rate_cap > tight.rate_cap > 0
    assert loose.tpot <= conversation.slo.tpot_s
    assert hopeless.rate_cap == 0.0


def test_vllm_candidates_are_colocated_replicas_covering_the_pool(a100: Cluster, model: ModelSpec,
                                                                  conversation: Workload) -> None:
    cm = CostModel.from_catalog(model, a100.gpu_types())
    systems = vllm_candidates(a100, model, conversation, cm)
    assert 1 <= len(systems) <= 3
    for s in systems:
        assert set(s.plan.phase_counts) == {"colocated"}
        assert sum(len(g.device_ids) for g in s.plan.groups) == 8
        assert s.plan.cost_per_hour == pytest.approx(a100.price_per_hour)
        assert sum(s.plan.routing.arrival.values()) == pytest.approx(1.0)


def test_distserve_candidates_split_the_pool_into_prefill_and_decode(a100: Cluster, model: ModelSpec,
                                                                    conversation: Workload) -> None:
    cm = CostModel.from_catalog(model, a100.gpu_types())
    systems = distserve_candidates(a100, model, conversation, cm)
    assert systems
    scores = [s.plan.prediction.capacity_rps for s in systems]
    for s in systems:
        counts = s.plan.phase_counts
        assert counts.get("prefill", 0) >= 1 and counts.get("decode", 0) >= 1
        assert sum(len(g.device_ids) for g in s.plan.groups) <= 8
        assert s.routing == "round_robin"
    assert scores[0] == max(scores)


def test_best_by_simulation_keeps_the_highest_simulated_rate(a100: Cluster, model: ModelSpec,
                                                             conversation: Workload) -> None:
    cm = CostModel.from_catalog(model, a100.gpu_types())
    seen: list[Scored] = []
    best = best_by_simulation(vllm_candidates(a100, model, conversation, cm), conversation, cm, n=N,
                              on_result=seen.append)
    assert best.search.rate == max(s.search.rate for s in seen) > 0
    assert best.search.result is not None
    slo = conversation.effective_slo
    assert best.search.result.attainment(slo.ttft_s, slo.tpot_s) >= 0.9


def test_hexgen_search_stays_colocated_and_within_budget(small: Cluster, model: ModelSpec,
                                                          conversation: Workload) -> None:
    cm = CostModel.from_catalog(model, small.gpu_types())
    budget = Budget(usd_per_hour=small.price_per_hour)
    (system,) = hexgen_candidates(small, model, conversation, budget, cm)
    assert set(system.plan.phase_counts) == {"colocated"}
    assert system.plan.cost_per_hour <= budget.usd_per_hour + 1e-9
    assert all(cm.max_kv_tokens(g.config) > 0 for g in system.plan.groups)


def test_random_groups_are_seeded_and_every_group_holds_a_replica(small: Cluster, model: ModelSpec,
                                                                   conversation: Workload) -> None:
    cm = CostModel.from_catalog(model, small.gpu_types())
    a = random_groups_system(small, model, conversation, cm, seed=3)
    b = random_groups_system(small, model, conversation, cm, seed=3)
    assert [g.device_ids for g in a.plan.groups] == [g.device_ids for g in b.plan.groups]
    assert all(cm.max_kv_tokens(g.config) > 0 for g in a.plan.groups)


def test_thunder_ablations_change_only_what_they_name(small: Cluster, model: ModelSpec,
                                                      conversation: Workload) -> None:
    cm = CostModel.from_catalog(model, small.gpu_types())
    systems = thunder_systems(small, model, conversation, Budget(usd_per_hour=small.price_per_hour), cm)
    assert set(systems) == {"thunder", "no-compression", "no-routing-lp", "random-groups"}
    thunder, raw, rr = systems["thunder"], systems["no-compression"], systems["no-routing-lp"]
    assert thunder.compressed and thunder.plan.kv_compression > 3
    assert not raw.compressed and raw.plan.kv_compression == 1.0
    assert rr.plan is thunder.plan and rr.routing == "round_robin"
    # the lightweight re-plan for a rate keeps every group and its parallel config
    again = thunder.plan_at(2 * thunder.plan.rate)
    assert sorted(g.config.device_ids for g in again.groups) == sorted(g.config.device_ids for g in thunder.plan.groups)
    # served over a 20x slower wire, thunder's uncompressed handoff hurts more than its compressed one
    slow = replace(thunder, plan=replace(thunder.plan, group_links={
        k: Link(bandwidth=v.bandwidth / 20, latency=v.latency) for k, v in thunder.plan.group_links.items()}),
        replan_for_rate=None)
    rate = 0.5 * max(thunder.plan.prediction.capacity_rps, 0.2)
    fast_run = slow.run(conversation, cm, rate=rate, n=N, seed=0)
    raw_run = replace(slow, compressed=False).run(conversation, cm, rate=rate, n=N, seed=0)
    assert np.nanmean(raw_run.tpot_s) > np.nanmean(fast_run.tpot_s)
