"""Parallel configuration of one model replica: pipeline stages (each a TP group of same-type devices) and links.

Bandwidths are bytes/s and latencies seconds throughout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from planner.errors import SpecError


@dataclass(frozen=True, slots=True, kw_only=True)
class Link:
    """A point-to-point path: `bandwidth` bytes/s, `latency` seconds (α-β model: t = latency + bytes/bandwidth)."""

    bandwidth: float
    latency: float = 0.0

    def time(self, nbytes: float) -> float:
        return self.latency + nbytes / self.bandwidth


@dataclass(frozen=True, slots=True, kw_only=True)
class StageConfig:
    """One pipeline stage: `num_layers` consecutive layers, tensor-parallel over `device_ids` (same GPU type)."""

    gpu_type: str
    device_ids: tuple[str, ...]
    num_layers: int
    tp_bandwidth: float = math.inf
    """Slowest link inside the TP group (bytes/s); inf for TP=1."""
    tp_latency: float = 0.0

    def __post_init__(self) -> None:
        if not self.device_ids:
            raise SpecError("StageConfig: device_ids is empty; a stage needs at least one device")
        if self.num_layers < 1:
            raise SpecError(f"StageConfig({self.device_ids}): num_layers={self.num_layers} must be >= 1")

    @property
    def tp(self) -> int:
        return len(self.device_ids)

    def to_dict(self) -> dict[str, Any]:
        return {
            "gpu_type": self.gpu_type,
            "device_ids": list(self.device_ids),
            "num_layers": self.num_layers,
            "tp_bandwidth": _finite_or_none(self.tp_bandwidth),
            "tp_latency": self.tp_latency,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> StageConfig:
        bw = raw.get("tp_bandwidth")
        return cls(
            gpu_type=raw["gpu_type"],
            device_ids=tuple(raw["device_ids"]),
            num_layers=int(raw["num_layers"]),
            tp_bandwidth=math.inf if bw is None else float(bw),
            tp_latency=float(raw.get("tp_latency", 0.0)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaConfig:
    """A full model copy: stages in pipeline order (stage 0 holds the embedding, the last the LM head).

    `hops[k]` is the link from stage k to stage k+1 (len = pp - 1).
    """

    stages: tuple[StageConfig, ...]
    hops: tuple[Link, ...] = ()

    def __post_init__(self) -> None:
        if not self.stages:
            raise SpecError("ReplicaConfig: no stages")
        if len(self.hops) != len(self.stages) - 1:
            raise SpecError(f"ReplicaConfig: {len(self.stages)} stages need {len(self.stages) - 1} hops, got {len(self.hops)}")

    @property
    def pp(self) -> int:
        return len(self.stages)

    @property
    def num_layers(self) -> int:
        return sum(s.num_layers for s in self.stages)

    @property
    def layer_split(self) -> tuple[int, ...]:
        return tuple(s.num_layers for s in self.stages)

    @property
    def tp_degrees(self) -> tuple[int, ...]:
        return tuple(s.tp for s in self.stages)

    @property
    def device_ids(self) -> tuple[str, ...]:
        return tuple(d for s in self.stages for d in s.device_ids)

    @property
    def gpu_types(self) -> tuple[str, ...]:
        return tuple(s.gpu_type for s in self.stages for _ in s.device_ids)

    @classmethod
    def single(cls, gpu_type: str, device_ids: tuple[str, ...], num_layers: int, *, tp_link: Link | None = None) -> ReplicaConfig:
        """One stage holding every layer, TP over `device_ids`."""
        link = tp_link or Link(bandwidth=math.inf)
        stage = StageConfig(gpu_type=gpu_type, device_ids=device_ids, num_layers=num_layers,
                            tp_bandwidth=link.bandwidth, tp_latency=link.latency)
        return cls(stages=(stage,))

    def to_dict(self) -> dict[str, Any]:
        return {
            "stages": [s.to_dict() for s in self.stages],
            "hops": [{"bandwidth": h.bandwidth, "latency": h.latency} for h in self.hops],
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ReplicaConfig:
        return cls(
            stages=tuple(StageConfig.from_dict(s) for s in raw["stages"]),
            hops=tuple(Link(bandwidth=float(h["bandwidth"]), latency=float(h["latency"])) for h in raw["hops"]),
        )


def _finite_or_none(x: float) -> float | None:
    return None if math.isinf(x) else x


__all__ = ["Link", "ReplicaConfig", "StageConfig"]
