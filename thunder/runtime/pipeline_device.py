"""`PipelineDeviceActor`: the leader device of a replica group that spans several devices (pipeline parallel).

Its process runs the group's `PipelineEngine` (scheduling, sampling) and stage 0 (the first layers); every
further stage is a `StageActor` in a child process of this one, one per device, holding the plan's
non-uniform layer split. To the router and sink it is an ordinary device actor: same messages, same reports.

It serves ``colocated`` only: moving a request's KV into or out of a pipeline (handoff) is not supported yet.
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

__all__ = ["PIPELINE_DEVICE_ACTOR", "PipelineDeviceActor", "check_pipelined_group", "layer_split_of"]

PIPELINE_DEVICE_ACTOR = "thunder.runtime.pipeline_device:PipelineDeviceActor"


def layer_split_of(replica_config: dict[str, Any]) -> list[int]:
    """Layers per pipeline stage of a plan's `ReplicaConfig.to_dict()`."""
    return [int(stage["num_layers"]) for stage in replica_config["stages"]]


def check_pipelined_group(group: GroupPlan, devices: list[LocalDevice]) -> None:
    """Raise `ConfigError` unless `group` (on `devices`, in order) can be served by a `PipelineDeviceActor`."""
    from thunder.engine.config import ConfigError  # NOTE: lazily: it imports torch

    for k, stage in enumerate(group.config.stages):
        if stage.tp > 1:
            raise ConfigError(
                f"group {group.id}: stage {k} is tensor-parallel over {list(stage.device_ids)} (TP={stage.tp}); "
                "TP inside a served stage is not supported yet for engine='torch': plan PP-only groups "
                "(one device per stage), single-device groups, or use --engine sim"
            )
    if group.phase != "colocated":
        raise ConfigError(
            f"group {group.id} spans {len(devices)} devices (PP={group.pp}) with phase {group.phase!r}: KV "
            "handoff into or out of a pipelined replica is not supported yet; serve it 'colocated' "
            "(e.g. --mode colocated) or plan single-device prefill/decode groups"
        )
    if any(d.kind != "cpu" for d in devices):
        raise ConfigError(
            f"group {group.id}: pipelined replica groups run on CPU devices only so far "
            f"(devices: {[d.device_id for d in devices]}); plan single-GPU groups"
        )


class PipelineDeviceActor(DeviceActor):
    """Spawn like a `DeviceActor` plus ``stage_env``: the environment of each stage's process (stage 0's entry
    is unused: it runs here). The split comes from ``engine.replica_config`` (the plan's stages)."""

    roles = ("colocated",)

    def __init__(self, *, stage_env: list[dict[str, str]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stage_env = stage_env
        self.stage_infos: list[StageInfo] = []

    async def _build_core(self) -> DeviceCore:
        # NOTE: torch loads in a worker thread, so this node keeps answering heartbeats.
        pipeline = await asyncio.to_thread(importlib.import_module, "thunder.runtime.pipeline")
        from thunder.runtime.device_core import DeviceCore

        spec = self.spec
        engine, self.stage_infos = await pipeline.start_pipeline(
            self.system,
            layer_split=layer_split_of(spec.replica_config),
            model=spec.model,
            dtype=spec.dtype,
            kv_cache_gib=spec.kv_cache_gib,
            max_num_seqs=spec.max_num_seqs,
            max_num_batched_tokens=spec.max_num_batched_tokens,
            threads_per_stage=spec.threads,
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
        return [(*i.layer_range, i.pid) for i in self.stage_infos]
