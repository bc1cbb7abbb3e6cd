"""The planner's input specs in one place: GPU catalog, cluster, model, workload, SLO, budget."""

from __future__ import annotations

from planner.cluster import Cluster, Device, NetworkDefaults, gbps_to_bytes
from planner.errors import PlanError, SpecError
from planner.gpus import GIB, GPUType, data_dir, load_gpu_catalog
from planner.model_spec import ModelSpec
from planner.workload import DEFAULT_SLOS, SLO, Budget, Workload

__all__ = [
    "DEFAULT_SLOS",
    "GIB",
    "SLO",
    "Budget",
    "Cluster",
    "Device",
    "GPUType",
    "ModelSpec",
    "NetworkDefaults",
    "PlanError",
    "SpecError",
    "Workload",
    "data_dir",
    "gbps_to_bytes",
    "load_gpu_catalog",
]
