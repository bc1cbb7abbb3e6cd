"""Per-role CPU policy: how many torch threads and what OS scheduling priority each CPU device process gets.

On a CPU-only machine every device process competes for the same cores. Disaggregation only pays when a
decode step is never stalled by a prefill, so the default policy ``decode-first`` gives each decode device
the cores (``cores // decode devices`` threads, normal priority) and each prefill device fewer threads at a
lower priority (``nice`` +``prefill_nice``): the kernel then runs decode first whenever both are ready, and
prefill takes the idle cycles. ``even`` splits the cores evenly at equal priority (the previous behaviour).
Colocated devices always split evenly: each serves both phases.

NOTE: the cores are oversubscribed on purpose under ``decode-first`` (decode and prefill threads together
exceed the cores); OpenMP waits passively (`thunder._threads`), so an idle decode device costs nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from thunder.runtime.config import CPU_POLICIES

if TYPE_CHECKING:
    from planner import Plan
    from thunder.runtime.config import RuntimeConfig
    from thunder.runtime.discovery import LocalDevice

__all__ = ["CPU_POLICIES", "CpuShare", "cpu_shares", "lower_priority", "plan_shares"]

DEFAULT_PREFILL_NICE = 10


@dataclass(frozen=True, slots=True)
class CpuShare:
    """One device process's torch threads and nice increment (0: normal priority)."""

    threads: int
    nice: int = 0


def cpu_shares(
    policy: str,
    roles: list[str],
    *,
    cores: int | None = None,
    threads: int | None = None,
    prefill_nice: int = DEFAULT_PREFILL_NICE,
) -> list[CpuShare]:
    """The share of each device (``roles[i]`` is device i's role) under ``policy``.

    ``threads`` (the user's ``--threads-per-device``) overrides every device's thread count; the priorities
    still follow the policy.
    """
    if policy not in CPU_POLICIES:
        raise ValueError(f"cpu_policy={policy!r}: choose one of {CPU_POLICIES}")
    cores = cores or os.cpu_count() or 1
    even = max(1, cores // max(len(roles), 1))
    disaggregated = "prefill" in roles and "decode" in roles
    if policy == "even" or not disaggregated:
        return [CpuShare(threads or even) for _ in roles]
    num_decode = sum(r == "decode" for r in roles)
    num_other = len(roles) - num_decode
    decode_threads = max(1, cores // num_decode)
    other_threads = max(1, cores // (2 * num_other))  # prefill: half the cores split among them
    return [
        CpuShare(threads or decode_threads)
        if r == "decode"
        else CpuShare(threads or other_threads, prefill_nice if r == "prefill" else 0)
        for r in roles
    ]


def plan_shares(config: RuntimeConfig, plan: Plan, local: list[LocalDevice]) -> dict[str, CpuShare]:
    """Each planned device's share under ``config.cpu_policy`` (CPU devices; with a CUDA device: ``even``)."""
    kinds = {d.device_id: d.kind for d in local}
    ids = [d for g in plan.groups for d in g.device_ids]
    roles = [g.phase for g in plan.groups for _ in g.device_ids]
    cpu_only = all(kinds.get(d, "cpu") == "cpu" for d in ids)
    shares = cpu_shares(
        config.cpu_policy if cpu_only else "even",
        roles,
        threads=config.threads_per_device,
        prefill_nice=config.prefill_nice,
    )
    return dict(zip(ids, shares, strict=True))


def lower_priority(nice: int) -> int:
    """Raise the niceness of every thread of this process to at least ``nice`` (idempotent; Linux niceness
    is per thread, and threads started later inherit it from their creator). Returns how many changed.

    NOTE: an unprivileged process can only lower its priority, never raise it back.
    """
    if nice <= 0:
        return 0
    tids = [int(t) for t in os.listdir("/proc/self/task")] if os.path.isdir("/proc/self/task") else [0]
    changed = 0
    for tid in tids:
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) < nice:
                os.setpriority(os.PRIO_PROCESS, tid, min(19, nice))
                changed += 1
        except (ProcessLookupError, PermissionError):
            continue  # a thread that just ended; or a priority we may not set
    return changed
