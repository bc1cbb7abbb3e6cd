"""Lower level: layer-split DP, TP/PP choice per group, KV link between groups."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from planner import Cluster, CostModel, ModelSpec, Workload
from planner.capacity import WorkloadSample, decode_profile, prefill_profile
from planner.parallel import ParallelSolver, _split_layers, group_link

ROOT = Path(__file__).resolve().parents[2]
LLAMA = ModelSpec.from_catalog("llama-30b")


@pytest.fixture(scope="module")
def solver() -> ParallelSolver:
    cluster = Cluster.from_toml(ROOT / "examples/clusters/paper-cloud-32.toml")
    sample = WorkloadSample.of(Workload.from_trace("conversation").clipped(2048))
    return ParallelSolver(cluster, CostModel.from_catalog(LLAMA), sample)


@pytest.mark.parametrize("use_sum", [False, True])
def test_split_dp_matches_brute_force(use_sum: bool) -> None:
    rng = np.random.default_rng(1)
    total = 9
    per_layer = rng.uniform(0.5, 2.0, size=3)
    caps = [5, 9, 4]
    costs = [np.where((np.arange(total + 1) >= 1) & (np.arange(total + 1) <= c), 0.1 + r * np.arange(total + 1), np.inf)
             for r, c in zip(per_layer, caps, strict=True)]

    def objective(split: tuple[int, ...]) -> float:
        times = [costs[s][n] for s, n in enumerate(split)]
        return max(times) + (sum(times) if use_sum else 0.0)

    best = min(objective(sp) for sp in itertools.product(range(1, total + 1), repeat=3) if sum(sp) == total)
    result = _split_layers(costs, total, use_sum)
    assert result is not None
    split, value = result
    assert value == pytest.approx(best) == objective(split)
    assert sum(split) == total and all(1 <= n <= c for n, c in zip(split, caps, strict=True))


def test_faster_stage_gets_more_layers(solver: ParallelSolver) -> None:
    # one A6000 (768 GB/s) + four 3090 Ti (1008 GB/s, 24 GB): decode balances bandwidth under memory caps
    idx = solver.cluster.index
    members = [idx["a6000-0/0"], idx["3090ti-0/0"], idx["3090ti-0/1"]]
    cfg = solver.best_config(members, "decode")
    assert cfg is not None and cfg.num_layers == 60
    assert set(cfg.gpu_types) == {"rtx-a6000", "rtx-3090-ti"}


def test_tp_only_within_a_node_and_type(solver: ParallelSolver) -> None:
    idx = solver.cluster.index
    members = [idx[f"a5000-0/{i}"] for i in range(4)] + [idx[f"3090ti-0/{i}"] for i in range(4)]
    for phase in ("prefill", "decode"):
        cfg = solver.best_config(members, phase)
        assert cfg is not None
        for stage in cfg.stages:
            nodes = {d.split("/")[0] for d in stage.device_ids}
            assert len(nodes) == 1 and stage.tp in (1, 2, 4)
        assert sorted(cfg.device_ids) == sorted(solver.cluster.devices[i].id for i in members)


def test_model_that_cannot_fit_returns_none(solver: ParallelSolver) -> None:
    idx = solver.cluster.index
    assert solver.best_config([idx["3090ti-0/0"], idx["3090ti-0/1"]], "decode") is None  # 48 GB < 65 GB of weights


def test_decode_tp_beats_pp_on_nvlink_free_node(solver: ParallelSolver) -> None:
    idx = solver.cluster.index
    members = [idx[f"a6000-0/{i}"] for i in range(4)]
    cm, sample = solver.cost_model, solver.sample
    dec = solver.best_config(members, "decode")
    pre = solver.best_config(members, "prefill")
    assert dec is not None and pre is not None
    assert decode_profile(cm, dec, sample).rate_cap >= decode_profile(cm, pre, sample).rate_cap
    assert prefill_profile(cm, pre, sample).rate_cap >= prefill_profile(cm, dec, sample).rate_cap


def test_group_link_is_parallel_over_overlapping_stages(solver: ParallelSolver) -> None:
    idx = solver.cluster.index
    a = solver.best_config([idx["a6000-0/0"], idx["a6000-0/1"]], "prefill")
    b = solver.best_config([idx["a40-0/0"], idx["a40-0/1"]], "decode")
    assert a is not None and b is not None
    link = group_link(solver.cluster, a, b)
    per_device = solver.cluster.link("a6000-0/0", "a40-0/0")[0]
    assert per_device <= link.bandwidth <= 2.5 * per_device
