"""The Swap polish after the tabu search: a decode pipeline over three nodes becomes a TP 4 x PP 2 over two."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from planner import Cluster, CostModel, ModelSpec, Workload
from planner.capacity import WorkloadSample
from planner.evaluate import Evaluator, Group, canonical
from planner.parallel import ParallelSolver
from planner.tabu import TabuSearch, TabuSettings

ROOT = Path(__file__).resolve().parents[2]
LLAMA = ModelSpec.from_catalog("llama-30b")


@pytest.fixture(scope="module")
def search() -> TabuSearch:
    cloud = Cluster.from_toml(ROOT / "examples/clusters/paper-cloud-32.toml")
    wl = Workload.from_trace("conversation", max_context=LLAMA.max_context)
    cm = CostModel.from_catalog(LLAMA, cloud.gpu_types())
    sample = WorkloadSample.of(wl)
    ev = Evaluator(cloud, cm, sample, ParallelSolver(cloud, cm, sample).best_config)
    prices = np.array([d.price_per_hour for d in cloud.devices])
    return TabuSearch(ev, prices, 13.54, TabuSettings(), seed=0)


def _group(search: TabuSearch, phase: str, *ids: str) -> Group:
    index = search.ev.cluster.index
    return Group(frozenset(index[i] for i in ids), phase)


def _nodes(search: TabuSearch, node: str, *k: int) -> list[str]:
    return [f"{node}/{i}" for i in k]


def test_swap_neighbours_exchange_same_type_devices_across_nodes_and_keep_the_price(search: TabuSearch) -> None:
    state = canonical([
        _group(search, "decode", *_nodes(search, "a6000-2", 0, 1), *_nodes(search, "a6000-0", 2, 3),
               *_nodes(search, "a6000-1", 0, 1, 2, 3)),
        _group(search, "prefill", *_nodes(search, "a6000-0", 0, 1), *_nodes(search, "a40-0", 0, 1)),
    ])
    devs = search.ev.cluster.devices
    neighbours = search.swap_neighbours(state)
    assert neighbours
    for s in neighbours:
        assert search.cost(s) == pytest.approx(search.cost(state))
        assert sorted(len(g.members) for g in s) == sorted(len(g.members) for g in state)
        for before, after in zip(sorted(state, key=lambda g: g.phase), sorted(s, key=lambda g: g.phase), strict=True):
            assert sorted(devs[i].gpu_type for i in before.members) == sorted(devs[i].gpu_type for i in after.members)
    consolidated = _group(search, "decode", *_nodes(search, "a6000-0", 0, 1, 2, 3), *_nodes(search, "a6000-1", 0, 1, 2, 3))
    assert any(consolidated in s for s in neighbours)


def test_polish_consolidates_a_three_node_decode_pipeline(search: TabuSearch) -> None:
    # planner seed 0's conversation grouping before the polish (docs/paper_table.md)
    state = canonical([
        _group(search, "prefill", *_nodes(search, "a6000-0", 0, 1), *_nodes(search, "a40-1", 0, 1),
               *_nodes(search, "a40-0", 2, 3)),
        _group(search, "decode", *_nodes(search, "a6000-2", 0, 1), *_nodes(search, "a6000-0", 2, 3),
               *_nodes(search, "a6000-1", 0, 1, 2, 3)),
        _group(search, "prefill", *_nodes(search, "a40-2", 0, 1), *_nodes(search, "a40-1", 2, 3),
               *_nodes(search, "a40-0", 0, 1)),
        _group(search, "decode", *_nodes(search, "a5000-0", 0, 1, 2, 3)),
        _group(search, "decode", *_nodes(search, "3090ti-0", 0, 1, 2, 3), *_nodes(search, "a5000-1", 0, 1, 2, 3)),
    ])
    before = search.ev.evaluate(state, exact=True)
    polished, _, after = search.polish(state, frozenset(), before)
    assert after.score > before.score
    decode_pp = [search.ev.config(g).pp for g in polished if g.phase == "decode" and len(g.members) == 8
                 and all(search.ev.cluster.devices[i].gpu_type == "rtx-a6000" for i in g.members)]
    assert decode_pp == [2]
