"""Scoring a search state (groups of device indices + phases) with the lower level: configs, profiles, routing.

A state is a tuple of `Group`s. Its score is `(attainment, capacity_rps)`, compared lexicographically with
attainment rounded to 3 decimals, so among plans that meet the SLO the one with more headroom wins.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from planner.capacity import DecodeProfile, PrefillProfile, WorkloadSample, decode_profile, prefill_profile
from planner.cluster import Cluster
from planner.config import Link, ReplicaConfig
from planner.cost_model import CostModel
from planner.estimate import Orchestration
from planner.parallel import group_link
from planner.plan import Prediction

ConfigFn = Callable[[frozenset[int], str], ReplicaConfig | None]
INVALID = (-1.0, 0.0)


@dataclass(frozen=True, slots=True, order=True)
class Group:
    """One replica in a search state: a set of cluster device indices and its phase."""

    members: frozenset[int]
    phase: str

    @property
    def first(self) -> int:
        return min(self.members)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Evaluation:
    score: tuple[float, float]
    prediction: Prediction | None
    prefill: tuple[Group, ...] = ()
    decode: tuple[Group, ...] = ()
    flows: np.ndarray | None = None


def canonical(groups: Sequence[Group]) -> tuple[Group, ...]:
    return tuple(sorted(groups, key=lambda g: g.first))


def grouping(groups: Iterable[Group]) -> frozenset[frozenset[int]]:
    """The device sets of a state, phases ignored (two states with one grouping differ only in roles)."""
    return frozenset(g.members for g in groups)


class Evaluator:
    """Caches configs, service profiles and inter-group links; scores states fast (proportional routing) or
    exactly (routing LP)."""

    def __init__(self, cluster: Cluster, cost_model: CostModel, sample: WorkloadSample, config_fn: ConfigFn,
                 *, compressed: bool = True) -> None:
        self.cluster = cluster
        self.cost_model = cost_model
        self.sample = sample
        self.config_fn = config_fn
        self.compressed = compressed
        self._configs: dict[Group, ReplicaConfig | None] = {}
        self._profiles: dict[Group, PrefillProfile | DecodeProfile] = {}
        self._links: dict[tuple[Group, Group], Link] = {}
        self.evaluations = 0

    def at_rate(self, rate: float) -> Evaluator:
        """An evaluator for the same workload at arrival rate `rate`, sharing every cache (profiles depend on the
        lengths and deadlines, not on the rate)."""
        twin = copy.copy(self)
        twin.sample = replace(self.sample, rate=rate)
        return twin

    def config(self, group: Group) -> ReplicaConfig | None:
        if group not in self._configs:
            self._configs[group] = self.config_fn(group.members, group.phase)
        return self._configs[group]

    def profile(self, group: Group) -> PrefillProfile | DecodeProfile:
        if group not in self._profiles:
            config = self.config(group)
            assert config is not None
            fn = prefill_profile if group.phase == "prefill" else decode_profile
            self._profiles[group] = fn(self.cost_model, config, self.sample)
        return self._profiles[group]

    def link(self, a: Group, b: Group) -> Link:
        key = (a, b)
        if key not in self._links:
            ca, cb = self.config(a), self.config(b)
            assert ca is not None and cb is not None
            self._links[key] = group_link(self.cluster, ca, cb)
        return self._links[key]

    def link_tables(self, prefill: Sequence[Group], decode: Sequence[Group]) -> tuple[np.ndarray, np.ndarray]:
        """(bandwidth, latency) P×D of the KV links between `prefill` and `decode` groups (each pair cached).

        NOTE: a dense table over every group ever scored grew to 4096² floats (≈ 290 MB) at 32 devices; a search
        move changes one or two groups, so the per-pair cache answers nearly every lookup."""
        bw = np.empty((len(prefill), len(decode)))
        lat = np.empty_like(bw)
        for i, a in enumerate(prefill):
            for j, b in enumerate(decode):
                lk = self.link(a, b)
                bw[i, j], lat[i, j] = lk.bandwidth, lk.latency
        return bw, lat

    def evaluate(self, state: Sequence[Group], *, exact: bool) -> Evaluation:
        self.evaluations += 1
        if any(self.config(g) is None for g in state):
            return Evaluation(score=INVALID, prediction=None)
        prefill = tuple(g for g in state if g.phase == "prefill")
        decode = tuple(g for g in state if g.phase == "decode")
        if not prefill or not decode:
            return Evaluation(score=INVALID, prediction=None)
        link_bw, link_lat = self.link_tables(prefill, decode)
        orch = Orchestration(
            prefill=[self.profile(g) for g in prefill],  # type: ignore[misc]
            decode=[self.profile(g) for g in decode],  # type: ignore[misc]
            link_bw=link_bw, link_lat=link_lat,
            sample=self.sample, cost_model=self.cost_model, compressed=self.compressed)
        flows = orch.route(exact=exact)
        pred = orch.predict(flows)
        score = (round(pred.slo_attainment, 3), pred.capacity_rps)
        return Evaluation(score=score, prediction=pred, prefill=prefill, decode=decode, flows=flows)

    def capacities(self, group: Group) -> tuple[float, float]:
        """(prefill, decode) SLO-feasible capacity of a group's devices in either role (0 if it cannot fit)."""
        out = []
        for phase in ("prefill", "decode"):
            g = Group(group.members, phase)
            out.append(0.0 if self.config(g) is None else self.profile(g).rate_cap)
        return out[0], out[1]


def assign_phases(evaluator: Evaluator, groups: Sequence[frozenset[int]]) -> tuple[Group, ...]:
    """Initial phase designation: order groups by prefill/decode capacity ratio and cut where the prefill and
    decode capacities balance (compute-strong groups prefill, bandwidth-rich groups decode)."""
    caps = [evaluator.capacities(Group(m, "prefill")) for m in groups]
    order = sorted(range(len(groups)), key=lambda i: -(caps[i][0] + 1e-9) / (caps[i][1] + 1e-9))
    best_k, best_val = 1, -math.inf
    for k in range(1, len(groups)):
        val = min(sum(caps[i][0] for i in order[:k]), sum(caps[i][1] for i in order[k:]))
        if val > best_val:
            best_k, best_val = k, val
    return canonical([Group(groups[i], "prefill" if pos < best_k else "decode") for pos, i in enumerate(order)])


__all__ = ["INVALID", "Evaluation", "Evaluator", "Group", "assign_phases", "canonical", "grouping"]
