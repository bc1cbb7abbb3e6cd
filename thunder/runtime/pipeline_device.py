"""`PipelineDeviceActor`: the leader device of a replica group that spans several devices (PP and/or TP).

Its process runs the group's `PipelineEngine` (scheduling, sampling) and rank 0 of stage 0 (the first layers,
or its TP share of them); every further rank is a `StageActor` in a child process of this one, one per device,
holding the plan's non-uniform layer split and TP degree per stage. To the router and sink it is an ordinary
device actor: same messages, same reports, any role — a prefill group exports the KV it assembles from its
ranks, a decode group cuts an imported KV to its ranks (`pipeline`), whatever the other side's split.
"""

from __future__ import annotations

import asyncio
import importlib
from typing import TYPE_CHECKING, Any

from thunder.runtime.device_actor import DeviceActor

if TYPE_CHECKING:
    from planner import GroupPlan
    from thunder.runtime.device_core import DeviceCore
    from thunder.runtime.discovery import LocalDevice
    from thunder.runtime.pipeline import StageInfo

__all__ = [
    "PIPELINE_DEVICE_ACTOR",
    "PipelineDeviceActor",
    "check_pipelined_group",
    "layer_split_of",
    "tp_degrees_of",
]

PIPELINE_DEVICE_ACTOR = "thunder.runtime.pipeline_device:PipelineDeviceActor"


def layer_split_of(replica_config: dict[str, Any]) -> list[int]:
    """Layers per pipeline stage of a plan's `ReplicaConfig.to_dict()`."""
    return [int(stage["num_layers"]) for stage in replica_config["stages"]]


def tp_degrees_of(replica_config: dict[str, Any]) -> list[int]:
    """TP degree (devices) per pipeline stage of a plan's `ReplicaConfig.to_dict()`."""
    return [len(stage["device_ids"]) for stage in replica_config["stages"]]


def check_pipelined_group(group: GroupPlan, devices: list[LocalDevice], kv_heads: int | None = None) -> None:
    """Raise `ConfigError` unless `group` (on `devices`, in order) can be served by a `PipelineDeviceActor`
    (``kv_heads``: the model's KV heads, the most ranks a TP stage can split them over)."""
    from thunder.engine.config import ConfigError  # NOTE: lazily: it imports torch

    for k, stage in enumerate(group.config.stages):
        if kv_heads is not None and stage.tp > kv_heads:
            raise ConfigError(
                f"group {group.id}: stage {k} is tensor-parallel over {stage.tp} devices but the model has "
                f"{kv_heads} KV heads; plan TP <= {kv_heads} (each rank keeps whole KV heads)"
            )

    kinds = sorted({d.kind for d in devices})
    if len(kinds) > 1:
        raise ConfigError(
            f"group {group.id} mixes device kinds {kinds} (devices: {[d.device_id for d in devices]}); "
            "plan groups of one kind (all CPU workers or all CUDA devices)"
        )


class PipelineDeviceActor(DeviceActor):
    """Spawn like a `DeviceActor` plus ``stage_env``: the environment of each device's process in the plan's
    device order (the first entry is unused: rank 0 of stage 0 runs here) and ``stage_nice`` (the CPU
    priority of the stage processes). The split comes from ``engine.replica_config`` (the plan's stages)."""

    def __init__(self, *, stage_env: list[dict[str, str]], stage_nice: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stage_env = stage_env
        self.stage_nice = stage_nice
        self.stage_infos: list[list[StageInfo]] = []

    async def _build_core(self) -> DeviceCore:
        # NOTE: torch loads in a worker thread, so this node keeps answering heartbeats.
        pipeline = await asyncio.to_thread(importlib.import_module, "thunder.runtime.pipeline")
        from thunder.runtime.device_core import DeviceCore

        spec = self.spec
        engine, self.stage_infos = await pipeline.start_pipeline(
            self.system,
            layer_split=layer_split_of(spec.replica_config),
            tp_degrees=tp_degrees_of(spec.replica_config),
            model=spec.model,
            dtype=spec.dtype,
            device=spec.device,
            kv_cache_gib=spec.kv_cache_gib,
            max_num_seqs=spec.max_num_seqs,
            max_num_batched_tokens=spec.max_num_batched_tokens,
            threads_per_stage=spec.threads,
            nice=self.stage_nice,
            seed=spec.seed,
            first_stage_here=True,
            stage_env=self.stage_env,
        )
        return DeviceCore(
            engine,  # type: ignore[arg-type]
            replica=self.replica,
            role=self.initial_role,
            max_num_seqs=spec.max_num_seqs,
            device=spec.device,
        )

    def _stages(self) -> list[tuple[int, int, int]]:
        return [(*i.layer_range, i.pid) for ranks in self.stage_infos for i in ranks]
