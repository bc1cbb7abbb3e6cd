"""thunder.runtime: the disaggregated serving runtime — device actors, KV handoff, router, sink, backend.

Request path: `ActorBackend.generate` -> `Router` (plan ratios, SLO-aware skip) -> prefill `DeviceActor`
(engine step, first token) -> `KVHandoff` (4-bit KV, device to device) -> decode `DeviceActor` -> one
`StepReport` per step -> `Sink` -> the request's stream.

NOTE: the names below load lazily (module `__getattr__`): a device node imports
`thunder.runtime.device_actor` on its event loop, and pulling torch in there would stall its heartbeats.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ActorBackend": "thunder.runtime.backend",
    "CPU_TYPE": "thunder.runtime.discovery",
    "DEFAULT_PROFILE": "thunder.runtime.profile",
    "DeviceActor": "thunder.runtime.device_actor",
    "DeviceCore": "thunder.runtime.device_core",
    "ENGINE_BUILDERS": "thunder.runtime.engines",
    "Engine": "thunder.runtime.engines",
    "KV_TRANSFER_DTYPES": "thunder.runtime.config",
    "LiveState": "thunder.runtime.sink",
    "LocalDevice": "thunder.runtime.discovery",
    "PipelineDeviceActor": "thunder.runtime.pipeline_device",
    "PipelineEngine": "thunder.runtime.pipeline",
    "ReplicaLoad": "thunder.runtime.routing",
    "Router": "thunder.runtime.router",
    "RoutingTable": "thunder.runtime.router",
    "Runtime": "thunder.runtime.runtime",
    "RuntimeConfig": "thunder.runtime.config",
    "Sink": "thunder.runtime.sink",
    "SloTargets": "thunder.runtime.routing",
    "SmoothWRR": "thunder.runtime.routing",
    "StepOutcome": "thunder.runtime.device_core",
    "StreamFailed": "thunder.runtime.streams",
    "StreamTable": "thunder.runtime.streams",
    "Submit": "thunder.runtime.router",
    "as_colocated": "thunder.runtime.planning",
    "build_engine": "thunder.runtime.engines",
    "calibrated_cost_model": "thunder.runtime.planning",
    "catalog_key_for": "thunder.runtime.discovery",
    "discover_cluster": "thunder.runtime.discovery",
    "export_handoff": "thunder.runtime.handoff",
    "import_kv": "thunder.runtime.handoff",
    "make_plan": "thunder.runtime.planning",
    "model_spec_for": "thunder.runtime.planning",
    "profile_engine": "thunder.runtime.profile",
    "routing_table": "thunder.runtime.runtime",
    "start_pipeline": "thunder.runtime.pipeline",
    "start_runtime": "thunder.runtime.launch",
    "to_samples": "thunder.runtime.profile",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'thunder.runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
