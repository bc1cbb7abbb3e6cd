"""`Plan`: the planner's output — replica groups, their phase and parallel config, routing, predictions.

JSON shape (`Plan.to_json()`): phases are spelled "prefill", "decode" or "colocated"; bandwidths bytes/s; times s.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from planner.config import Link, ReplicaConfig
from planner.cost_model import CostModel
from planner.errors import SpecError

PHASES = ("prefill", "decode", "colocated")
PLAN_SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupPlan:
    """One model replica: its devices (as pipeline stages of TP groups) and the phase it serves."""

    id: str
    phase: str
    config: ReplicaConfig

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise SpecError(f"group {self.id!r}: phase={self.phase!r}; use one of {PHASES}")

    @property
    def device_ids(self) -> tuple[str, ...]:
        return self.config.device_ids

    @property
    def gpu_types(self) -> tuple[str, ...]:
        return self.config.gpu_types

    @property
    def tp(self) -> tuple[int, ...]:
        return self.config.tp_degrees

    @property
    def pp(self) -> int:
        return self.config.pp

    @property
    def layer_split(self) -> tuple[int, ...]:
        return self.config.layer_split

    def with_phase(self, phase: str) -> GroupPlan:
        return GroupPlan(id=self.id, phase=phase, config=self.config)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "phase": self.phase, **self.config.to_dict()}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> GroupPlan:
        return cls(id=raw["id"], phase=raw["phase"], config=ReplicaConfig.from_dict(raw))


@dataclass(frozen=True, slots=True, kw_only=True)
class Routing:
    """Where requests go. `arrival[g]` = share of all arrivals sent to group g (prefill or colocated groups; sums
    to 1). `handoff[p][d]` = share of prefill group p's requests whose KV goes to decode group d (sums to 1 per p)."""

    arrival: Mapping[str, float]
    handoff: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def pair_shares(self) -> dict[tuple[str, str], float]:
        """{(prefill, decode): share of all arrivals} (x_ij / λ)."""
        return {(p, d): self.arrival.get(p, 0.0) * r for p, row in self.handoff.items() for d, r in row.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"arrival": dict(self.arrival), "handoff": {p: dict(row) for p, row in self.handoff.items()}}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Routing:
        return cls(arrival={k: float(v) for k, v in raw["arrival"].items()},
                   handoff={p: {d: float(r) for d, r in row.items()} for p, row in raw.get("handoff", {}).items()})


@dataclass(frozen=True, slots=True, kw_only=True)
class Prediction:
    """The planner's analytical estimate at the workload's rate (not a simulation)."""

    slo_attainment: float
    """Fraction of requests expected to meet both TTFT and TPOT deadlines."""
    throughput_tokens_s: float
    """Output tokens/s served."""
    goodput_rps: float
    """Requests/s that meet their SLO."""
    capacity_rps: float
    """Highest arrival rate the plan's SLO-feasible capacities can absorb."""
    mean_ttft_s: float
    mean_tpot_s: float

    def to_dict(self) -> dict[str, float | None]:
        return {k: _json_float(getattr(self, k)) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Prediction:
        return cls(**{k: math.inf if raw[k] is None else float(raw[k]) for k in cls.__dataclass_fields__})


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Plan:
    """A deployment: groups (model replicas), routing ratios, and the links between groups for KV handoff."""

    model: str
    groups: tuple[GroupPlan, ...]
    routing: Routing
    group_links: Mapping[tuple[str, str], Link]
    """Effective KV-handoff link between two groups, keyed by the (sorted) pair of group ids."""
    prediction: Prediction
    cost_per_hour: float
    workload: str
    rate: float
    ttft_slo_s: float
    tpot_slo_s: float
    kv_compression: float
    unused_device_ids: tuple[str, ...] = ()
    inactive_groups: tuple[GroupPlan, ...] = ()
    """Groups taken out of service (a device was lost); kept so a returning device can restore them."""
    search: Mapping[str, Any] = field(default_factory=dict)
    """How the plan was found (algorithm, seed, iterations, seconds)."""

    def group(self, group_id: str) -> GroupPlan:
        for g in self.groups:
            if g.id == group_id:
                return g
        raise SpecError(f"plan has no active group {group_id!r}; groups: {[g.id for g in self.groups]}")

    def groups_in(self, phase: str) -> tuple[GroupPlan, ...]:
        return tuple(g for g in self.groups if g.phase == phase)

    def link(self, a: str, b: str) -> Link:
        return self.group_links[(a, b) if a < b else (b, a)]

    @property
    def phase_counts(self) -> dict[str, int]:
        return {p: sum(g.phase == p for g in self.groups) for p in PHASES if any(g.phase == p for g in self.groups)}

    # ---- JSON ---------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": PLAN_SCHEMA_VERSION,
            "model": self.model,
            "workload": self.workload,
            "rate": self.rate,
            "slo": {"ttft_s": self.ttft_slo_s, "tpot_s": self.tpot_slo_s},
            "cost_per_hour": self.cost_per_hour,
            "kv_compression": self.kv_compression,
            "groups": [g.to_dict() for g in self.groups],
            "inactive_groups": [g.to_dict() for g in self.inactive_groups],
            "unused_device_ids": list(self.unused_device_ids),
            "routing": self.routing.to_dict(),
            "group_links": [{"a": a, "b": b, "bandwidth": _json_float(lk.bandwidth), "latency": lk.latency}
                            for (a, b), lk in sorted(self.group_links.items())],
            "prediction": self.prediction.to_dict(),
            "search": dict(self.search),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Plan:
        try:
            if raw.get("schema_version") != PLAN_SCHEMA_VERSION:
                raise SpecError(f"plan schema_version={raw.get('schema_version')!r}; this planner reads "
                                f"{PLAN_SCHEMA_VERSION}; re-run `thunder plan`")
            return cls(
                model=raw["model"], workload=raw["workload"], rate=float(raw["rate"]),
                ttft_slo_s=float(raw["slo"]["ttft_s"]), tpot_slo_s=float(raw["slo"]["tpot_s"]),
                cost_per_hour=float(raw["cost_per_hour"]), kv_compression=float(raw["kv_compression"]),
                groups=tuple(GroupPlan.from_dict(g) for g in raw["groups"]),
                inactive_groups=tuple(GroupPlan.from_dict(g) for g in raw.get("inactive_groups", [])),
                unused_device_ids=tuple(raw.get("unused_device_ids", [])),
                routing=Routing.from_dict(raw["routing"]),
                group_links={(e["a"], e["b"]): Link(bandwidth=math.inf if e["bandwidth"] is None else e["bandwidth"],
                                                    latency=e["latency"]) for e in raw["group_links"]},
                prediction=Prediction.from_dict(raw["prediction"]),
                search=raw.get("search", {}),
            )
        except (KeyError, TypeError) as exc:
            raise SpecError(f"plan JSON is missing or has a bad field ({exc!r}); re-run `thunder plan`") from None

    @classmethod
    def from_json(cls, text: str) -> Plan:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise SpecError(f"plan JSON is not valid JSON ({exc})") from None

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        try:
            return cls.from_json(Path(path).read_text())
        except FileNotFoundError:
            raise SpecError(f"plan file {str(path)!r} not found; write one with `thunder plan --out`") from None


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class ReplicaTiming:
    """Everything a simulator needs to time one group of a plan (a thin view over the cost model)."""

    plan: Plan
    group: GroupPlan
    cost_model: CostModel
    max_kv_tokens: int

    def prefill_time(self, prompt_lens: np.ndarray | list[int]) -> float:
        return self.cost_model.prefill_time(self.group.config, prompt_lens)

    def prefill_interval(self, prompt_lens: np.ndarray | list[int]) -> float:
        return self.cost_model.prefill_interval(self.group.config, prompt_lens)

    def decode_step_time(self, batch_size: int, mean_context: float) -> float:
        return self.cost_model.decode_step_time(self.group.config, batch_size, mean_context)

    def kv_transfer_time(self, prompt_tokens: int, to_group: str) -> float:
        """KV handoff time of one request's prompt to `to_group`, compressed as the plan says."""
        link = self.plan.link(self.group.id, to_group)
        nbytes = prompt_tokens * self.cost_model.kv_bytes_per_token
        return link.time(nbytes / self.plan.kv_compression)


def replica_timing(plan: Plan, group: str | GroupPlan, cost_model: CostModel) -> ReplicaTiming:
    """The timing view of one group of `plan` under `cost_model`."""
    g = plan.group(group) if isinstance(group, str) else group
    return ReplicaTiming(plan=plan, group=g, cost_model=cost_model, max_kv_tokens=cost_model.max_kv_tokens(g.config))


def _json_float(x: float) -> float | None:
    return None if math.isinf(x) or math.isnan(x) else x


__all__ = ["PHASES", "GroupPlan", "Plan", "Prediction", "ReplicaTiming", "Routing", "replica_timing"]
