"""`planner.simulate`: a Plan runs through the event core with the planner's own cost model."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from planner import Cluster, CostModel, ModelSpec, Workload
from planner.config import Link, ReplicaConfig
from planner.plan import GroupPlan, Plan, Prediction, Routing
from planner.sim_engine import simulate_topology
from planner.sim_types import Requests
from planner.simulate import simulate, topology_from_plan, workload_requests

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cost_model() -> CostModel:
    return CostModel.from_catalog(ModelSpec.from_catalog("llama-30b"))


@pytest.fixture(scope="module")
def a100() -> Cluster:
    return Cluster.from_toml(ROOT / "examples" / "clusters" / "paper-inhouse-8xa100.toml")


def _plan(cluster: Cluster, cm: CostModel, phases: list[str], *, arrival: dict[str, float] | None = None,
          handoff_bw: float | None = None) -> Plan:
    ids = [d.id for d in cluster.devices]
    groups = []
    for k, phase in enumerate(phases):
        dev = tuple(ids[2 * k: 2 * k + 2])
        bw, lat = cluster.link(dev[0], dev[1])
        cfg = ReplicaConfig.single("a100-80gb-sxm", dev, cm.model.num_layers, tp_link=Link(bandwidth=bw, latency=lat))
        groups.append(GroupPlan(id=f"g{k}", phase=phase, config=cfg))
    entry = [g.id for g in groups if g.phase != "decode"]
    decode = [g.id for g in groups if g.phase == "decode"]
    routing = Routing(arrival=arrival or {g: 1 / len(entry) for g in entry},
                      handoff={g.id: {d: 1 / len(decode) for d in decode} for g in groups if g.phase == "prefill"})
    links = {(a.id, b.id): Link(bandwidth=handoff_bw or cluster.link(a.device_ids[0], b.device_ids[0])[0],
                                latency=1e-4)
             for a in groups for b in groups if a.id < b.id}
    zero = Prediction(slo_attainment=0, throughput_tokens_s=0, goodput_rps=0, capacity_rps=0, mean_ttft_s=0,
                      mean_tpot_s=0)
    return Plan(model="llama-30b", groups=tuple(groups), routing=routing, group_links=links, prediction=zero,
                cost_per_hour=13.54, workload="test", rate=1.0, ttft_slo_s=1.0, tpot_slo_s=0.1,
                kv_compression=cm.kv_compression)


def _one(prompt: int, out: int) -> Requests:
    return Requests(arrival_s=np.zeros(1), prompt_tokens=np.array([prompt]), output_tokens=np.array([out]))


def test_colocated_zero_load_ttft_is_the_cost_models_prefill_time(a100: Cluster, cost_model: CostModel) -> None:
    plan = _plan(a100, cost_model, ["colocated"])
    res = simulate_topology(topology_from_plan(plan, cost_model), _one(1000, 1))
    assert res.ttft_s[0] == pytest.approx(cost_model.prefill_time(plan.groups[0].config, [1000]))


def test_disaggregated_zero_load_e2e_adds_handoff_and_decode(a100: Cluster, cost_model: CostModel) -> None:
    plan = _plan(a100, cost_model, ["prefill", "decode"], handoff_bw=5e9 / 8)  # 5 Gbit/s between the groups
    prompt, out = 1500, 20
    res = simulate_topology(topology_from_plan(plan, cost_model), _one(prompt, out))
    cfg_p, cfg_d = plan.groups[0].config, plan.groups[1].config
    handoff = plan.link("g0", "g1").time(prompt * cost_model.kv_bytes_per_token / plan.kv_compression)
    decode = sum(cost_model.decode_step_time(cfg_d, 1, prompt + 1 + k) for k in range(out - 1))
    expected = cost_model.prefill_time(cfg_p, [prompt]) + handoff + decode
    assert res.e2e_s[0] == pytest.approx(expected, rel=0.01)


def test_uncompressed_handoff_costs_the_compression_ratio_more_wire_time(a100: Cluster, cost_model: CostModel) -> None:
    plan = _plan(a100, cost_model, ["prefill", "decode"], handoff_bw=5e9 / 8)
    prompt, out = 2000, 10
    fast = simulate_topology(topology_from_plan(plan, cost_model), _one(prompt, out))
    slow = simulate_topology(topology_from_plan(plan, cost_model, compressed=False), _one(prompt, out))
    wire = prompt * cost_model.kv_bytes_per_token / (5e9 / 8)
    gained = slow.e2e_s[0] - fast.e2e_s[0]
    assert gained == pytest.approx(wire * (1 - 1 / plan.kv_compression), rel=1e-6)


def test_round_robin_ablation_ignores_plan_ratios(a100: Cluster, cost_model: CostModel) -> None:
    plan = _plan(a100, cost_model, ["colocated"] * 4, arrival={"g0": 0.7, "g1": 0.1, "g2": 0.1, "g3": 0.1})
    assert topology_from_plan(plan, cost_model).entry_ratios.tolist() == pytest.approx([0.7, 0.1, 0.1, 0.1])
    assert topology_from_plan(plan, cost_model, routing="round_robin").entry_ratios.tolist() == [0.25] * 4
    wl = Workload.from_trace("conversation", max_context=2048)
    skewed = simulate(plan, wl, cost_model, rate=6.0, n=800)
    even = simulate(plan, wl, cost_model, rate=6.0, n=800, routing="round_robin")
    # 70 % of the load on one replica queues far more than an even split
    assert skewed.e2e_s.mean() > even.e2e_s.mean()


def test_workload_requests_poisson_and_replay(cost_model: CostModel) -> None:
    wl = Workload.from_trace("coding", max_context=2048)
    poisson = workload_requests(wl, rate=4.0, n=4000, seed=1)
    assert len(poisson) == 4000
    assert (len(poisson) - 1) / poisson.arrival_s[-1] == pytest.approx(4.0, rel=0.05)
    assert set(np.unique(poisson.prompt_tokens)) <= set(np.unique(wl.prompt_lens))
    replay = workload_requests(wl, rate=10.0, n=500, replay=True)
    assert (500 - 1) / replay.arrival_s[-1] == pytest.approx(10.0)
    assert np.array_equal(replay.output_tokens, wl.output_lens[:500])
    assert math.isclose(replay.arrival_s[0], 0.0)
