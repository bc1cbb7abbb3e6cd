"""Per-role CPU policy: how many torch threads and what OS scheduling priority each CPU device process gets.

On a CPU-only machine every device process competes for the same cores. Disaggregation only pays when a
decode step is never stalled by a prefill, so the default policy ``decode-first`` gives each decode device
the cores (``cores // decode devices`` threads) and each prefill device half the cores, optionally at a
lower OS priority (niceness ``prefill_nice``: the kernel then runs decode first whenever both are ready).
While a decode device runs a small batch (< `SMALL_BATCH` sequences) it uses only the cores prefill does not
(``small_batch_threads``): there one more thread gains little, and an OpenMP team that shares a core with
prefill or the server waits for its slowest thread every layer (measured on 2 cores: TPOT p50 14.5 ms with 1
thread vs 18-19 ms with 2 at 2 req/s; 76 vs 53 ms with 64 sequences at once).
``even`` splits the cores evenly at equal priority (the previous behaviour). Colocated devices always split
evenly: each serves both phases.

``prefill_nice`` defaults to 0: niceness ranks a process against every process on the machine, not only our
decode device, so on a shared machine a niced prefill starves behind other tenants (measured: TTFT p50 687 ms
vs 53 ms at 2 req/s with co-tenant load ~2.5) while decode's TPOT did not improve (benchmarks/serving.md).

NOTE: the cores are oversubscribed on purpose under ``decode-first`` (decode and prefill threads together
exceed the cores); OpenMP waits passively (`thunder._threads`), so an idle decode device costs nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from thunder.runtime.config import CPU_POLICIES
from thunder.runtime.messages import SetRole

if TYPE_CHECKING:
    from planner import Plan
    from thunder.runtime.config import RuntimeConfig
    from thunder.runtime.discovery import LocalDevice

__all__ = ["CPU_POLICIES", "CpuShare", "cpu_shares", "lower_priority", "plan_shares", "role_message"]

DEFAULT_PREFILL_NICE = 0
SMALL_BATCH = 16
"""A decode batch below this many sequences runs on ``small_batch_threads``."""


@dataclass(frozen=True, slots=True)
class CpuShare:
    """One device process's torch threads, niceness (0: normal priority) and the threads it uses while its
    batch is small (0: always ``threads``)."""

    threads: int
    nice: int = 0
    small_batch_threads: int = 0

    def threads_for(self, num_seqs: int) -> int:
        """Threads for a step over ``num_seqs`` sequences."""
        small = self.small_batch_threads and num_seqs < SMALL_BATCH
        return self.small_batch_threads if small else self.threads


def cpu_shares(
    policy: str,
    roles: list[str],
    *,
    cores: int | None = None,
    threads: int | None = None,
    prefill_nice: int = DEFAULT_PREFILL_NICE,
) -> list[CpuShare]:
    """The share of each device (``roles[i]`` is device i's role) under ``policy``.

    ``threads`` (the user's ``--threads-per-device``) fixes every device's thread count; the priorities
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
    small = max(1, decode_threads - num_other * other_threads // num_decode)  # the cores prefill leaves
    decode = CpuShare(threads, 0) if threads else CpuShare(decode_threads, 0, small)
    other = CpuShare(threads or other_threads, prefill_nice)
    return [decode if r == "decode" else other if r == "prefill" else CpuShare(other.threads) for r in roles]


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


def role_message(phase: str, replica: str, share: CpuShare | None) -> SetRole:
    """The `SetRole` binding a group's leader device to ``phase`` as ``replica`` with its CPU ``share``
    (None: the device keeps its threads and priority)."""
    if share is None:
        return SetRole(phase, replica)
    return SetRole(phase, replica, share.threads, share.nice, share.small_batch_threads)


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
