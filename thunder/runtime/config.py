"""`RuntimeConfig`: everything `thunder run` / `AsyncLLM.start` decide before the first device starts."""

from __future__ import annotations

import os
from dataclasses import dataclass

from thunder.engine.config import ConfigError
from thunder.models import DEFAULT_MODEL

__all__ = ["CPU_POLICIES", "KV_TRANSFER_DTYPES", "RuntimeConfig"]

CPU_POLICIES = ("decode-first", "even")

KV_TRANSFER_DTYPES = ("int4", "fp16", "fp32")
_ENGINES = ("torch", "sim")
_MODES = ("disaggregated", "colocated")


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeConfig:
    """A deployment. Defaults: the embedded SmolLM2-135M-Instruct on this machine as 1 prefill + 1 decode."""

    model: str = DEFAULT_MODEL
    engine: str = "torch"
    dtype: str = "auto"
    mode: str = "disaggregated"
    devices: int | None = None
    """Devices to discover (CUDA: the first N; CPU: N workers). Ignored with `cluster` or `plan`."""
    cluster: str | None = None
    """Cluster TOML to plan for instead of this machine (its devices must be local for engine='torch')."""
    plan: str | None = None
    """Plan JSON to serve as is (no discovery profile, no search)."""
    trace: str = "conversation"
    """Workload the planner plans for (Azure 2023 trace name or CSV path)."""
    rate: float | None = None
    """Arrival rate (req/s) to plan for. None: the trace's rate, or half the planned SLO-feasible capacity
    when that capacity is below the trace's rate (`planning.servable_workload`)."""
    slo_scale: float | None = None
    """Multiplier of the trace's TTFT/TPOT deadlines. None: 1, doubled until this hardware can meet them."""
    kv_transfer_dtype: str = "int4"
    kv_group_size: int = 64
    threads_per_device: int | None = None
    """torch threads per CPU device (default: from `cpu_policy`)."""
    cpu_policy: str = "decode-first"
    """How CPU device processes share the cores (`runtime.cpu_policy`): ``decode-first`` gives each decode
    device all cores' threads (only the cores prefill leaves while its batch is small) and prefill devices
    half the cores, so decode steps are not stalled by prefill; ``even`` splits the cores evenly."""
    prefill_nice: int = 0
    """Niceness of prefill device processes under ``decode-first`` (0-19; 0 keeps normal priority). Niceness
    ranks against every process on the machine: on a shared one a niced prefill waits behind other tenants."""
    kv_cache_gib: float = 1.0
    max_num_seqs: int = 128
    max_num_batched_tokens: int = 2048
    max_pending: int = 1024
    """Requests admitted and unfinished before new ones get 503 / `Overloaded`."""
    profile: bool = True
    """Calibrate CPU / unknown-GPU devices with a short start-up profile (else nominal constants)."""
    in_process: bool = False
    """Run device actors in this process (debugging); default: one child OS process per device."""
    seed: int = 0
    startup_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if self.kv_transfer_dtype not in KV_TRANSFER_DTYPES:
            raise ConfigError(
                f"kv_transfer_dtype={self.kv_transfer_dtype!r}: choose one of {KV_TRANSFER_DTYPES}"
            )
        if self.engine not in _ENGINES:
            raise ConfigError(f"engine={self.engine!r}: choose one of {_ENGINES}")
        if self.mode not in _MODES:
            raise ConfigError(f"mode={self.mode!r}: choose one of {_MODES}")
        for name in ("kv_group_size", "max_num_seqs", "max_num_batched_tokens", "max_pending"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)}: must be >= 1")
        if self.devices is not None and self.devices < 1:
            raise ConfigError(f"devices={self.devices}: must be >= 1; try 2 (one prefill, one decode)")
        if self.cpu_policy not in CPU_POLICIES:
            raise ConfigError(f"cpu_policy={self.cpu_policy!r}: choose one of {CPU_POLICIES}")
        if not 0 <= self.prefill_nice <= 19:
            raise ConfigError(f"prefill_nice={self.prefill_nice}: must be within 0-19; try 5")
        if self.threads_per_device is not None and self.threads_per_device < 1:
            raise ConfigError(f"threads_per_device={self.threads_per_device}: must be >= 1")
        if self.rate is not None and not self.rate > 0:
            raise ConfigError(f"rate={self.rate}: must be > 0 requests/s; try 0.5, or leave it unset")
        if self.slo_scale is not None and not self.slo_scale > 0:
            raise ConfigError(f"slo_scale={self.slo_scale}: must be > 0; try 1.0 (the trace's deadlines)")
        if self.kv_cache_gib <= 0:
            raise ConfigError(f"kv_cache_gib={self.kv_cache_gib}: must be > 0; try 1.0")

    def threads_for(self, num_devices: int) -> int:
        return self.threads_per_device or max(1, (os.cpu_count() or 1) // max(num_devices, 1))
