"""SimLinks: α-β KV transfer times of simulated devices, serialised per link; kv_links_of reads the plan."""

from __future__ import annotations

import math

import pytest

from planner import Link, Plan, Prediction, ReplicaConfig, Routing
from planner.plan import GroupPlan
from thunder.runtime.sim_links import SimLinks, kv_links_of


def test_transfers_on_one_link_queue_behind_each_other_but_latency_overlaps() -> None:
    links = SimLinks({"d0": (1e9, 0.002)})
    assert links.schedule("d0", 10**9, now=0.0) == pytest.approx(1.002)
    assert links.schedule("d0", 5 * 10**8, now=0.5) == pytest.approx(1.0 + 0.5 + 0.002 - 0.5)  # waits for the first
    assert links.schedule("d0", 10**6, now=3.0) == pytest.approx(0.001 + 0.002)  # link idle again
    assert links.bytes_sent == {"d0": 10**9 + 5 * 10**8 + 10**6}


def test_links_are_independent_and_unknown_or_infinite_ones_are_free() -> None:
    links = SimLinks({"a": (1e9, 0.0), "b": (math.inf, 1e-5)})
    assert links.schedule("a", 10**9, now=0.0) == pytest.approx(1.0)
    assert links.schedule("b", 10**12, now=0.0) == pytest.approx(1e-5)
    assert links.schedule("elsewhere", 10**12, now=0.0) == 0.0


def test_kv_links_of_reads_every_other_group_from_the_plan() -> None:
    groups = tuple(GroupPlan(id=g, phase=ph, config=ReplicaConfig.single("a40", (f"n/{i}",), 60))
                   for i, (g, ph) in enumerate([("p", "prefill"), ("d1", "decode"), ("d2", "decode")]))
    plan = Plan(
        model="llama-30b", groups=groups, routing=Routing(arrival={"p": 1.0}, handoff={"p": {"d1": 0.5, "d2": 0.5}}),
        group_links={("d1", "p"): Link(bandwidth=5e9, latency=2e-4), ("d2", "p"): Link(bandwidth=1.25e9, latency=2e-3),
                     ("d1", "d2"): Link(bandwidth=math.inf, latency=1e-5)},
        prediction=Prediction(slo_attainment=1, throughput_tokens_s=1, goodput_rps=1, capacity_rps=1,
                              mean_ttft_s=1, mean_tpot_s=1),
        cost_per_hour=1.0, workload="conversation", rate=1.0, ttft_slo_s=2.0, tpot_slo_s=0.2, kv_compression=3.56,
    )
    assert kv_links_of(plan, "p") == {"d1": (5e9, 2e-4), "d2": (1.25e9, 2e-3)}
    assert kv_links_of(plan, "d2") == {"p": (1.25e9, 2e-3), "d1": (math.inf, 1e-5)}
