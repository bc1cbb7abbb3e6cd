"""`start_runtime`: from a `RuntimeConfig` to a serving `Runtime`.

1. model spec and cluster (discovered, or a cluster file), or a plan file;
2. device actors, one child OS process each (they load weights in parallel);
3. without a plan: a short profile of one device per uncalibrated type -> `CostModel.calibrate` -> plan,
   then each device is bound to its group and role with `SetRole` (no reload) and unused ones stop;
4. peers linked for direct KV handoff, the routing table set, one real generation through every replica.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from actors import ActorRef, ActorSystem, Node
from planner import Cluster, CostModel, ModelSpec, Plan
from thunder.engine.config import ConfigError
from thunder.runtime.cpu_policy import CpuShare, plan_shares, role_message
from thunder.runtime.discovery import LocalDevice, discover_cluster
from thunder.runtime.engines import check_engine
from thunder.runtime.messages import DeviceInfo, EngineSpec, GetInfo, ProfilePoint, ProfileResult
from thunder.runtime.pipeline_device import PIPELINE_DEVICE_ACTOR, check_pipelined_group
from thunder.runtime.planning import calibrated_cost_model, make_plan, model_spec_for, planning_workload
from thunder.runtime.profile import DEFAULT_PROFILE
from thunder.runtime.router import Router, SetTable
from thunder.runtime.routing import SloTargets
from thunder.runtime.runtime import Runtime, routing_table
from thunder.runtime.sim_links import kv_links_of
from thunder.runtime.sink import LiveState, Sink
from thunder.runtime.streams import StreamTable

if TYPE_CHECKING:
    from thunder.metrics import ServingMetrics
    from thunder.runtime.config import RuntimeConfig

__all__ = ["DEVICE_ACTOR", "start_runtime"]

log = logging.getLogger(__name__)
DEVICE_ACTOR = "thunder.runtime.device_actor:DeviceActor"
Say = Callable[[str], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Slot:
    """One device actor to start: its name (group id, or device id before planning), role and device."""

    name: str
    role: str
    device: LocalDevice | None  # None: a simulated group (engine='sim')
    spec: EngineSpec
    kv_links: dict[str, tuple[float, float]] = field(default_factory=dict)  # sim: the plan's links
    stage_devices: tuple[LocalDevice, ...] = ()  # a multi-device torch group: its devices in plan order
    nice: int = 0  # the group's CPU priority (`cpu_policy`)


async def start_runtime(
    config: RuntimeConfig, *, metrics: ServingMetrics | None = None, on_progress: Say | None = None
) -> Runtime:
    """Start everything `config` describes; on any failure, whatever started is stopped again."""
    say = on_progress or (lambda text: log.info("%s", text))
    system = ActorSystem(node_id="thunder")
    try:
        async with asyncio.timeout(config.startup_timeout_s):
            return await _start(config, system, metrics, say)
    except BaseException:
        await system.shutdown()
        raise


async def _start(
    config: RuntimeConfig, system: ActorSystem, metrics: ServingMetrics | None, say: Say
) -> Runtime:
    from thunder.models import Tokenizer, load_model_dir

    check_engine(config.engine)
    say(f"resolving model {config.model}")
    model = model_spec_for(config.model)
    tokenizer = Tokenizer(
        load_model_dir(config.model if config.engine == "torch" else "smollm2-135m-instruct")
    )
    plan = Plan.load(config.plan) if config.plan else None
    cluster, local = _cluster(config)
    if (
        plan is None
        and not any(d.needs_profile for d in local)
        and (config.profile or config.engine == "sim")
    ):
        say("planning (catalog device constants)")
        plan = make_plan(
            cluster,
            model,
            cost_model=_catalog_cost_model(model, cluster),
            mode=config.mode,
            workload=planning_workload(model, config.trace),
            seed=config.seed,
            rate=config.rate,
            slo_scale=config.slo_scale,
        )
    slots = _slots(config, plan, local, kv_heads=model.num_kv_heads)
    streams, live = StreamTable(), LiveState()
    plan_slo = (plan.ttft_slo_s, plan.tpot_slo_s) if plan is not None else (2.0, 0.2)
    router = await system.spawn(
        Router,
        kwargs={
            "slo": SloTargets(ttft_s=plan_slo[0], tpot_s=plan_slo[1]),
            "streams": streams,
            "kv_transfer_dtype": config.kv_transfer_dtype,
            "kv_group_size": config.kv_group_size,
        },
    )
    sink = await system.spawn(
        Sink, kwargs={"streams": streams, "live": live, "router": router, "metrics": metrics}
    )
    say(
        f"starting {len(slots)} simulated replica group(s) in this process"
        if config.engine == "sim"
        else f"starting {sum(max(1, len(s.stage_devices)) for s in slots)} device process(es) and loading weights"
    )
    nodes = await _start_nodes(system, config, slots)
    refs = dict(
        zip(
            [s.name for s in slots],
            await asyncio.gather(
                *(_spawn(system, config, s, sink, n) for s, n in zip(slots, nodes, strict=True))
            ),
            strict=True,
        )
    )
    if plan is None:
        plan = await _plan_with_profile(config, model, cluster, local, refs, say)
        refs = await _bind(system, plan, refs)
    await _bind_roles(plan, refs, plan_shares(config, plan, local) if config.engine == "torch" else {})
    infos: dict[str, DeviceInfo] = {g: await ref.ask(GetInfo(), timeout=30.0) for g, ref in refs.items()}
    await router.ask(SetTable(routing_table(plan, refs)))
    runtime = Runtime(
        config=config,
        system=system,
        plan=plan,
        router=router,
        sink=sink,
        devices=refs,
        infos=infos,
        streams=streams,
        live=live,
        tokenizer=tokenizer,
        model_name=config.model,
        max_model_len=min(i.max_model_len for i in infos.values()),
        cpu_shares=(lambda p: plan_shares(config, p, local)) if config.engine == "torch" else None,
    )
    await runtime.link_peers()
    say("probing every replica with a real generation")
    await runtime.probe()
    return runtime


def _catalog_cost_model(model: ModelSpec, cluster: Cluster) -> CostModel:
    return CostModel.from_catalog(model, cluster.gpu_types())


def _cluster(config: RuntimeConfig) -> tuple[Cluster, list[LocalDevice]]:
    if config.cluster is None:
        return discover_cluster(config.devices)
    cluster = Cluster.from_toml(config.cluster)
    if config.engine == "sim":
        return cluster, []
    _, local = discover_cluster(len(cluster.devices))
    mine = [
        LocalDevice(device_id=d.id, kind=ld.kind, index=ld.index, gpu_type=d.gpu_type, needs_profile=False)
        for d, ld in zip(cluster.devices, local, strict=True)
    ]
    return cluster, mine


def _slots(
    config: RuntimeConfig, plan: Plan | None, local: list[LocalDevice], *, kv_heads: int | None = None
) -> list[_Slot]:
    by_id = {d.device_id: d for d in local}
    if plan is None:
        threads = config.threads_for(len(local))
        return [
            _Slot(name=d.device_id, role="colocated", device=d, spec=_spec(config, d, threads, {}))
            for d in local
        ]
    shares = plan_shares(config, plan, local)
    slots = []
    for g in plan.groups:
        devices = [by_id.get(d) for d in g.device_ids]
        if config.engine == "torch":
            missing = [d for d, found in zip(g.device_ids, devices, strict=True) if found is None]
            if missing:
                raise ConfigError(
                    f"plan devices {missing} of group {g.id} are not on this machine (local: {sorted(by_id)}); "
                    "plan for the discovered cluster or use --engine sim"
                )
            if len(g.device_ids) > 1:
                check_pipelined_group(g, devices, kv_heads)  # type: ignore[arg-type]
        share = shares[g.device_ids[0]]
        slots.append(
            _Slot(
                name=g.id,
                role=g.phase,
                device=devices[0],
                spec=_spec(config, devices[0], share.threads, g.config.to_dict(), gpu_type=g.gpu_types[0]),
                kv_links=kv_links_of(plan, g.id) if config.engine == "sim" else {},
                stage_devices=tuple(devices) if config.engine == "torch" and len(devices) > 1 else (),  # type: ignore[arg-type]
                nice=share.nice,
            )
        )
    return slots


def _spec(
    config: RuntimeConfig,
    device: LocalDevice | None,
    threads: int,
    replica_config: dict[str, Any],
    gpu_type: str | None = None,
) -> EngineSpec:
    return EngineSpec(
        kind=config.engine,
        model=config.model,
        dtype=config.dtype,
        device=device.kind if device is not None else "cpu",
        threads=threads,
        kv_cache_gib=config.kv_cache_gib,
        max_num_seqs=config.max_num_seqs,
        max_num_batched_tokens=config.max_num_batched_tokens,
        seed=config.seed,
        gpu_type=gpu_type or (device.gpu_type if device is not None else "cpu"),
        replica_config=replica_config,
    )


async def _start_nodes(system: ActorSystem, config: RuntimeConfig, slots: list[_Slot]) -> list[Node | None]:
    """One child OS process per slot, all started at once (each then loads its weights in parallel)."""
    if config.in_process or config.engine == "sim":  # sim devices hold no weights: in this process
        return [None] * len(slots)

    async def start(slot: _Slot) -> Node:
        env = _device_env(slot.device, slot.spec.threads)
        return await system.network.start_node(label=slot.name.replace("/", "-"), env=env)

    return list(await asyncio.gather(*(start(s) for s in slots)))


def _device_env(device: LocalDevice | None, threads: int) -> dict[str, str]:
    env = {"OMP_NUM_THREADS": str(threads)}
    if device is not None and device.kind == "cuda":
        env["CUDA_VISIBLE_DEVICES"] = str(device.index)
    return env


async def _spawn(
    system: ActorSystem, config: RuntimeConfig, slot: _Slot, sink: ActorRef, node: Node | None
) -> ActorRef:
    kwargs = {
        "replica": slot.name,
        "role": slot.role,
        "engine": slot.spec,
        "sink": sink,
        "own_process": node is not None,
    }
    if config.engine == "sim":
        from thunder.runtime.sim_device import SimDeviceActor

        del kwargs["own_process"]
        return await system.spawn(SimDeviceActor, kwargs={**kwargs, "kv_links": slot.kv_links})
    factory = DEVICE_ACTOR
    if slot.stage_devices:
        factory = PIPELINE_DEVICE_ACTOR
        kwargs["stage_env"] = [_device_env(d, slot.spec.threads) for d in slot.stage_devices]
        kwargs["stage_nice"] = slot.nice
    return await system.spawn(factory, kwargs=kwargs, node=node)


async def _plan_with_profile(
    config: RuntimeConfig,
    model: ModelSpec,
    cluster: Cluster,
    local: list[LocalDevice],
    refs: dict[str, ActorRef],
    say: Say,
) -> Plan:
    profiles: dict[str, list[ProfilePoint]] = {}
    if config.profile:
        for gpu_type in sorted({d.gpu_type for d in local if d.needs_profile}):
            device = next(d for d in local if d.gpu_type == gpu_type)
            say(f"profiling {gpu_type} ({device.device_id}) for the cost model")
            result: ProfileResult = await refs[device.device_id].ask(DEFAULT_PROFILE, timeout=300.0)
            profiles[gpu_type] = result.points
    say("planning")
    cost_model = calibrated_cost_model(model, cluster, profiles)
    return make_plan(
        cluster,
        model,
        cost_model=cost_model,
        mode=config.mode,
        workload=planning_workload(model, config.trace),
        seed=config.seed,
        rate=config.rate,
        slo_scale=config.slo_scale,
    )


async def _bind(system: ActorSystem, plan: Plan, refs: dict[str, ActorRef]) -> dict[str, ActorRef]:
    """Re-key the device actors by plan group (single-device groups); stop the devices the plan leaves out."""
    bound: dict[str, ActorRef] = {}
    for g in plan.groups:
        if len(g.device_ids) > 1:
            raise ConfigError(
                f"group {g.id} spans {len(g.device_ids)} devices: after a start-up profile only single-device "
                "groups can be bound to the running devices; serve a multi-device (pipelined) plan with "
                "--plan FILE"
            )
        bound[g.id] = refs[g.device_ids[0]]
    for ref in refs.values():
        if ref not in bound.values():
            await system.stop(ref)
            node = system.network.nodes.get(ref.node_id) if ref.node_id != system.node_id else None
            if node is not None:
                await node.stop()
    return bound


async def _bind_roles(plan: Plan, refs: dict[str, ActorRef], shares: dict[str, CpuShare]) -> None:
    """Give each group its role and its leader device its CPU share (threads, priority)."""
    for g in plan.groups:
        await refs[g.id].ask(role_message(g.phase, g.id, shares.get(g.device_ids[0])))
