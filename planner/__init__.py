"""planner: pure planning for heterogeneous GPU pools (numpy, scipy, networkx only; no torch, no asyncio).

Invariant: every time estimate — in the search, the routing LP, re-planning and the simulator — comes from one
`CostModel`, so a calibration changes all of them at once.
"""

from planner.calibrate import ProfileSample, calibrate
from planner.config import Link, ReplicaConfig, StageConfig
from planner.cost_model import (
    KV_4BIT_COMPRESSION,
    CostModel,
    DeviceConstants,
    kv_bytes_per_token,
    kv_transfer_time,
)
from planner.gpus import read_toml
from planner.pick import PickSettings
from planner.plan import PHASES, GroupPlan, Plan, Prediction, ReplicaTiming, Routing, replica_timing
from planner.planning import plan
from planner.replan import BandwidthChanged, DeviceLost, DeviceReturned, Event, WorkloadShift, replan
from planner.sim_engine import simulate_topology
from planner.sim_metrics import SimResult
from planner.sim_search import RateSearchResult, max_rate_at_attainment
from planner.sim_types import (
    AffinePerf,
    ReplicaPerf,
    Requests,
    SimConfigError,
    SimReplica,
    SimTopology,
    poisson_requests,
)
from planner.simulate import simulate, topology_from_plan, workload_requests
from planner.specs import (
    DEFAULT_SLOS,
    SLO,
    Budget,
    Cluster,
    Device,
    GPUType,
    ModelSpec,
    PlanError,
    SpecError,
    Workload,
    data_dir,
    load_gpu_catalog,
)
from planner.tabu import SearchProgress, TabuSettings

__all__ = [
    "AffinePerf",
    "RateSearchResult",
    "ReplicaPerf",
    "Requests",
    "SimConfigError",
    "SimReplica",
    "SimResult",
    "SimTopology",
    "max_rate_at_attainment",
    "poisson_requests",
    "simulate",
    "simulate_topology",
    "topology_from_plan",
    "workload_requests",
    "BandwidthChanged",
    "DeviceLost",
    "DeviceReturned",
    "Event",
    "PickSettings",
    "SearchProgress",
    "TabuSettings",
    "WorkloadShift",
    "plan",
    "read_toml",
    "replan",
    "DEFAULT_SLOS",
    "KV_4BIT_COMPRESSION",
    "PHASES",
    "SLO",
    "Budget",
    "Cluster",
    "CostModel",
    "Device",
    "DeviceConstants",
    "GPUType",
    "GroupPlan",
    "Link",
    "ModelSpec",
    "Plan",
    "PlanError",
    "Prediction",
    "ProfileSample",
    "ReplicaConfig",
    "ReplicaTiming",
    "Routing",
    "SpecError",
    "StageConfig",
    "Workload",
    "calibrate",
    "data_dir",
    "kv_bytes_per_token",
    "kv_transfer_time",
    "load_gpu_catalog",
    "replica_timing",
]
