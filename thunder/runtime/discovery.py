"""Cluster discovery: this machine's devices as a planner `Cluster`.

CUDA devices are mapped to GPU-catalog types by name (an unknown GPU becomes a profiled type of its own);
without CUDA, the machine's cores are split into CPU workers, each a device of type ``cpu``. A ``cpu`` (or
unknown-GPU) type starts from nominal constants; the start-up profile (`thunder.runtime.profile`) replaces
them through `CostModel.calibrate`, the planner's calibration path.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from planner import Cluster, GPUType, load_gpu_catalog
from planner.gpus import GIB

__all__ = ["CPU_TYPE", "LocalDevice", "catalog_key_for", "discover_cluster"]

CPU_TYPE = "cpu"
LOCAL_NODE = "local"
# (pattern on the CUDA device name, catalog key); first match wins, so specific names come first.
_CUDA_NAMES: tuple[tuple[str, str], ...] = (
    (r"H100.*PCIe", "h100-pcie"),
    (r"H100", "h100-80gb-sxm"),
    (r"A100.*80", "a100-80gb-sxm"),
    (r"A100", "a100-40gb"),
    (r"L40S", "l40s"),
    (r"\bL4\b", "l4"),
    (r"A10G?\b", "a10g"),
    (r"\bA40\b", "a40"),
    (r"A6000", "rtx-a6000"),
    (r"A5000", "rtx-a5000"),
    (r"3090 ?Ti", "rtx-3090-ti"),
    (r"4090", "rtx-4090"),
    (r"V100", "v100-32gb"),
    (r"\bT4\b", "t4"),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalDevice:
    """Where a cluster device runs on this machine: ``cuda:<index>`` or a CPU worker."""

    device_id: str
    kind: str  # "cpu" | "cuda"
    index: int
    gpu_type: str
    needs_profile: bool  # constants are nominal until the start-up profile calibrates them


def catalog_key_for(cuda_name: str) -> str | None:
    """The GPU-catalog key of a CUDA device name (e.g. "NVIDIA A40" -> "a40"), or None if unknown."""
    for pattern, key in _CUDA_NAMES:
        if re.search(pattern, cuda_name, flags=re.IGNORECASE):
            return key
    return None


def _host_memory_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    except (ValueError, OSError):
        return 8.0


def _nominal(name: str, memory_gib: float) -> GPUType:
    # NOTE: placeholders only until calibration (a few-second profile of the real engine) replaces them.
    return GPUType(
        name=name,
        memory_gib=memory_gib,
        mem_bw_gbps=20.0,
        tflops_fp16=0.5,
        description=f"{name} (constants from the start-up profile)",
    )


def discover_cluster(
    devices: int | None = None, *, use_cuda: bool | None = None
) -> tuple[Cluster, list[LocalDevice]]:
    """This machine as a one-node cluster, plus where each of its devices runs.

    Args:
        devices: how many devices to use (CUDA: the first N; CPU: N workers sharing the cores). Default:
            every CUDA device, or 2 CPU workers (one prefill + one decode).
        use_cuda: force the CUDA (True) or CPU (False) path; default: CUDA when available.
    """
    if devices is not None and devices < 1:
        raise ValueError(f"devices={devices}: must be >= 1")
    if use_cuda is None:
        import torch

        use_cuda = torch.cuda.is_available()
    catalog = load_gpu_catalog()
    local: list[LocalDevice] = []
    if use_cuda:
        import torch

        count = torch.cuda.device_count()
        if devices is not None and devices > count:
            raise ValueError(f"devices={devices}: only {count} CUDA device(s) visible; use --devices {count}")
        for i in range(devices or count):
            props = torch.cuda.get_device_properties(i)
            key = catalog_key_for(props.name)
            if key is None:
                key = "cuda-" + re.sub(r"[^a-z0-9]+", "-", props.name.lower()).strip("-")
                catalog[key] = _nominal(key, props.total_memory / GIB)
            local.append(
                LocalDevice(
                    device_id=f"{LOCAL_NODE}/{i}",
                    kind="cuda",
                    index=i,
                    gpu_type=key,
                    needs_profile=key not in load_gpu_catalog(),
                )
            )
    else:
        n = devices or 2
        catalog[CPU_TYPE] = _nominal(CPU_TYPE, _host_memory_gib() / n)
        local = [
            LocalDevice(
                device_id=f"{LOCAL_NODE}/{i}", kind="cpu", index=i, gpu_type=CPU_TYPE, needs_profile=True
            )
            for i in range(n)
        ]
    by_type: dict[str, int] = {}
    for d in local:
        by_type[d.gpu_type] = by_type.get(d.gpu_type, 0) + 1
    nodes = [
        {
            "name": f"{LOCAL_NODE}-{t}" if len(by_type) > 1 else LOCAL_NODE,
            "gpu": t,
            "count": c,
            "price_per_gpu_hour": 0.0,
        }
        for t, c in by_type.items()
    ]
    cluster = Cluster.from_mapping({"name": "local", "node": nodes}, catalog=catalog)
    ids = iter(d.id for d in cluster.devices)
    local = [
        LocalDevice(
            device_id=next(ids),
            kind=d.kind,
            index=d.index,
            gpu_type=d.gpu_type,
            needs_profile=d.needs_profile,
        )
        for d in sorted(local, key=lambda d: list(by_type).index(d.gpu_type))
    ]
    return cluster, local
