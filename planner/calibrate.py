"""Fit a device type's effective FLOP/s, memory bandwidth, per-step overhead and KV-read bandwidth to measured
step times.

The fitted form is the cost model's own stage time, `o + max(FLOPs/F, bytes/B) + KV bytes read/A`, evaluated for
the profiled single-stage replica; the fit minimises relative error with `scipy.optimize.least_squares`
(log-parameters). A is fitted only when the profile can separate it: at least `MIN_SAMPLES_FOR_KV` samples and
decode steps at two or more context lengths; otherwise it keeps the prior's value (inf for catalog GPUs).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.optimize import least_squares

from planner.config import ReplicaConfig
from planner.errors import SpecError
from planner.gpus import GIB

if TYPE_CHECKING:
    from planner.cost_model import CostModel, DeviceConstants

MIN_SAMPLES_FOR_KV = 5
"""Samples of one device type needed before the KV-read bandwidth is fitted as a fourth constant."""
KV_READ_BW_BOUNDS = (1e6, 1e16)
"""bytes/s: the fitted KV-read bandwidth stays finite (an upper-bound fit means the term is negligible)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProfileSample:
    """One measured step. prefill: `batch_size` prompts of `seq_len` tokens; decode: one step of `batch_size`
    sequences with `seq_len` context tokens each. `num_layers` defaults to the whole model on one device."""

    phase: str
    gpu_type: str
    batch_size: int
    seq_len: int
    seconds: float
    num_layers: int | None = None
    tp: int = 1

    def __post_init__(self) -> None:
        if self.phase not in ("prefill", "decode"):
            raise SpecError(f"ProfileSample.phase={self.phase!r}; use 'prefill' or 'decode'")
        if self.batch_size < 1 or self.seq_len < 1 or not self.seconds > 0:
            raise SpecError(f"ProfileSample({self.phase}, batch={self.batch_size}, seq={self.seq_len}, "
                            f"seconds={self.seconds}): all must be positive")


def predict(cost_model: CostModel, sample: ProfileSample) -> float:
    """The cost model's step time for the configuration a sample measured."""
    layers = sample.num_layers or cost_model.model.num_layers
    ids = tuple(f"profile/{i}" for i in range(sample.tp))
    config = ReplicaConfig.single(sample.gpu_type, ids, layers)
    if sample.phase == "prefill":
        return cost_model.prefill_time(config, [sample.seq_len] * sample.batch_size)
    return cost_model.decode_step_time(config, sample.batch_size, sample.seq_len)


def _host_memory_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    except (ValueError, OSError):
        return 16.0


def calibrate(cost_model: CostModel, profile: Iterable[ProfileSample], *, memory_gib: float | None = None) -> CostModel:
    """A copy of `cost_model` with fitted constants for every device type in `profile`.

    A type absent from the catalog (e.g. "cpu") is created; its memory is `memory_gib` (default: host RAM).
    """
    from planner.cost_model import USABLE_MEMORY_FRACTION, DeviceConstants

    samples = list(profile)
    if not samples:
        raise SpecError("calibrate(profile): the profile is empty; measure some prefill and decode steps first")
    fitted: dict[str, DeviceConstants] = {}
    for gpu_type in sorted({s.gpu_type for s in samples}):
        group = [s for s in samples if s.gpu_type == gpu_type]
        if len(group) < 3:
            raise SpecError(f"calibrate: device type {gpu_type!r} has {len(group)} samples; need >= 3 to fit 3 constants")
        prior = cost_model.devices.get(gpu_type)
        mem = (memory_gib * GIB * USABLE_MEMORY_FRACTION if memory_gib is not None
               else prior.memory_bytes if prior is not None else _host_memory_gib() * GIB * USABLE_MEMORY_FRACTION)
        start = prior or DeviceConstants(flops=1e11, mem_bw=1e10, memory_bytes=mem)
        fitted[gpu_type] = _fit(cost_model, gpu_type, group, start, mem, fit_kv=_separates_kv(group))
    return cost_model.with_devices(**fitted)


def _separates_kv(group: list[ProfileSample]) -> bool:
    """Whether a profile can tell the KV-read term from the roofline: enough samples and decode steps at two or
    more context lengths. NOTE: decode steps at one context only vary the batch, and KV read ∝ batch is then
    indistinguishable from per-token compute; a fit would extrapolate to long contexts arbitrarily."""
    contexts = {s.seq_len for s in group if s.phase == "decode"}
    return len(group) >= MIN_SAMPLES_FOR_KV and len(contexts) >= 2


def _fit(cost_model: CostModel, gpu_type: str, group: list[ProfileSample], start: DeviceConstants, mem: float,
         *, fit_kv: bool) -> DeviceConstants:
    from planner.cost_model import DeviceConstants

    measured = np.array([s.seconds for s in group])
    lo_kv, hi_kv = (math.log(b) for b in KV_READ_BW_BOUNDS)

    def consts(logp: np.ndarray) -> DeviceConstants:
        kv = math.exp(logp[3]) if fit_kv else start.kv_read_bw
        return DeviceConstants(flops=math.exp(logp[0]), mem_bw=math.exp(logp[1]), memory_bytes=mem,
                               overhead_s=math.exp(logp[2]), kv_read_bw=kv)

    def residuals(logp: np.ndarray) -> np.ndarray:
        trial = cost_model.with_devices(**{gpu_type: consts(logp)})
        pred = np.array([predict(trial, s) for s in group])
        return (pred - measured) / measured

    x0 = [math.log(start.flops), math.log(start.mem_bw), math.log(max(start.overhead_s, 1e-5))]
    lower, upper = [-np.inf] * 3, [np.inf] * 3
    if fit_kv:  # start where the term is small but not negligible; the bounds keep it finite
        prior_kv = start.kv_read_bw if math.isfinite(start.kv_read_bw) else start.mem_bw
        x0.append(float(np.clip(math.log(prior_kv), lo_kv + 1e-3, hi_kv - 1e-3)))
        lower.append(lo_kv)
        upper.append(hi_kv)
    sol = least_squares(residuals, np.array(x0), bounds=(lower, upper), method="trf", x_scale=1.0, max_nfev=400)
    return consts(sol.x)


__all__ = ["KV_READ_BW_BOUNDS", "MIN_SAMPLES_FOR_KV", "ProfileSample", "calibrate", "predict"]
