"""Analytical step-time and memory model for one replica (roofline per stage + α-β links).

Per stage of `l` layers, TP degree `t`, device constants (F FLOP/s, B bytes/s, overhead o):
    time = o + max(FLOPs / (t·F), bytes / (t·B)) + TP all-reduce (2 per layer, ring: 2(t-1)α + 2(t-1)/t · msg/β)
Prefill FLOPs = l·(T·linear + attn·Σ s(s+1)/2) (+ LM head for the last token of each prompt on the last stage);
bytes = weights + KV written. Decode FLOPs = l·b·(linear + attn·ctx) (+ b LM heads); bytes = weights + KV read.
A PP hop sends the activations (tokens·hidden·dtype) over the stage link.

Decode with PP runs min(pp, batch) micro-batches in flight, so a step (TPOT) is
    max(Σ stage times + hops, m · max stage time)       (m = micro-batches, each of ceil(batch/m) sequences)
and throughput = batch / step. Prefill latency is Σ stages + hops; a pipelined replica accepts a new batch every
max stage time (`prefill_interval`).

Constants default to catalog peaks times efficiency factors; `calibrate(profile)` replaces them with fitted ones.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from planner.config import Link, ReplicaConfig, StageConfig
from planner.errors import SpecError
from planner.gpus import GPUType, load_gpu_catalog
from planner.model_spec import ModelSpec

if TYPE_CHECKING:
    from planner.calibrate import ProfileSample

COMPUTE_EFFICIENCY = 0.6
"""Achievable fraction of peak tensor FLOP/s in large GEMMs (typical 50-70 %)."""
MEMORY_EFFICIENCY = 0.8
"""Achievable fraction of peak DRAM bandwidth when streaming weights/KV."""
USABLE_MEMORY_FRACTION = 0.9
"""Device memory left after the CUDA context, allocator fragmentation and workspace."""
KV_4BIT_COMPRESSION = 16 / 4.5
"""FP16 -> 4-bit group-wise (group 64, fp16 scale + zero = 0.5 bit/elem): 16 / 4.5 ≈ 3.56x fewer bytes."""
ACTIVATION_TOKENS = 2048
"""Tokens of transient activations reserved per stage (one prefill chunk)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceConstants:
    """Effective (achievable) constants of one device type."""

    flops: float
    """FLOP/s."""
    mem_bw: float
    """bytes/s."""
    memory_bytes: float
    """Usable memory per device."""
    overhead_s: float = 0.0
    """Fixed time per step per stage (kernel launches, scheduling)."""

    @classmethod
    def from_gpu(cls, gpu: GPUType, *, compute_efficiency: float = COMPUTE_EFFICIENCY,
                 memory_efficiency: float = MEMORY_EFFICIENCY) -> DeviceConstants:
        return cls(flops=gpu.flops * compute_efficiency, mem_bw=gpu.mem_bw_bytes * memory_efficiency,
                   memory_bytes=gpu.memory_bytes * USABLE_MEMORY_FRACTION)


def kv_bytes_per_token(model: ModelSpec, dtype_bytes: int = 2) -> int:
    """KV-cache bytes for one token over all layers (GQA aware)."""
    return model.kv_bytes_per_token(dtype_bytes)


def kv_transfer_time(nbytes: float, link: Link, compression_ratio: float = 1.0) -> float:
    """α-β time to move `nbytes` of (uncompressed) KV over `link` after compressing it `compression_ratio`x."""
    if compression_ratio <= 0:
        raise SpecError(f"compression_ratio={compression_ratio} must be > 0 (1.0 = uncompressed)")
    return link.time(nbytes / compression_ratio)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class CostModel:
    """Step times and memory limits of replicas of `model` on devices described by `devices` (keyed by GPU type)."""

    model: ModelSpec
    devices: Mapping[str, DeviceConstants]
    dtype_bytes: int = 2
    kv_dtype_bytes: int = 2
    kv_compression: float = KV_4BIT_COMPRESSION
    activation_tokens: int = ACTIVATION_TOKENS

    @classmethod
    def from_catalog(cls, model: ModelSpec, catalog: Mapping[str, GPUType] | None = None, *,
                     compute_efficiency: float = COMPUTE_EFFICIENCY, memory_efficiency: float = MEMORY_EFFICIENCY,
                     kv_compression: float = KV_4BIT_COMPRESSION) -> CostModel:
        catalog = catalog if catalog is not None else load_gpu_catalog()
        devices = {name: DeviceConstants.from_gpu(g, compute_efficiency=compute_efficiency,
                                                  memory_efficiency=memory_efficiency) for name, g in catalog.items()}
        return cls(model=model, devices=devices, kv_compression=kv_compression)

    def with_devices(self, **constants: DeviceConstants) -> CostModel:
        return replace(self, devices={**self.devices, **constants})

    def without_compression(self) -> CostModel:
        return replace(self, kv_compression=1.0)

    def constants(self, gpu_type: str) -> DeviceConstants:
        try:
            return self.devices[gpu_type]
        except KeyError:
            raise SpecError(f"cost model has no constants for device type {gpu_type!r}; add it to gpus.toml or "
                            "supply them with CostModel.calibrate(profile)") from None

    # ---- sizes --------------------------------------------------------------------------------------------------
    @property
    def kv_bytes_per_token(self) -> int:
        return self.model.kv_bytes_per_token(self.kv_dtype_bytes)

    def stage_weight_bytes(self, stage: StageConfig, *, first: bool, last: bool) -> float:
        m = self.model
        params = stage.num_layers * m.layer_params
        if first:
            params += m.embedding_params
        if last and not (first and m.tie_word_embeddings):
            params += m.lm_head_params
        return float(params * self.dtype_bytes)

    def kv_transfer_time(self, tokens: float, link: Link, *, compressed: bool = True) -> float:
        """Time to move the KV of `tokens` prompt tokens between replicas over `link`."""
        ratio = self.kv_compression if compressed else 1.0
        return kv_transfer_time(tokens * self.kv_bytes_per_token, link, ratio)

    # ---- memory -------------------------------------------------------------------------------------------------
    def max_kv_tokens(self, config: ReplicaConfig) -> int:
        """KV tokens (all layers) the replica can hold after weights and activations; <= 0 means it does not fit."""
        best = math.inf
        m = self.model
        for k, stage in enumerate(config.stages):
            c = self.constants(stage.gpu_type)
            weights = self.stage_weight_bytes(stage, first=k == 0, last=k == config.pp - 1)
            act = self.activation_tokens * (4 * m.hidden_size + 3 * m.intermediate_size) * self.dtype_bytes
            free = c.memory_bytes * stage.tp - weights - act
            best = min(best, free / (stage.num_layers * m.kv_bytes_per_token_layer(self.kv_dtype_bytes)))
        return int(best)

    def memory_fits(self, config: ReplicaConfig, kv_tokens: int = 0) -> bool:
        """Whether weights, activations and `kv_tokens` of KV fit on every stage."""
        return self.max_kv_tokens(config) >= max(kv_tokens, 1)

    # ---- stage times --------------------------------------------------------------------------------------------
    def _stage_time(self, stage: StageConfig, flops: float, nbytes: float, allreduce_bytes: float) -> float:
        c = self.constants(stage.gpu_type)
        t = stage.tp
        time = c.overhead_s + max(flops / (t * c.flops), nbytes / (t * c.mem_bw))
        if t > 1:
            per_allreduce = 2 * (t - 1) * stage.tp_latency + 2 * (t - 1) / t * allreduce_bytes / stage.tp_bandwidth
            time += 2 * stage.num_layers * per_allreduce
        return time

    def prefill_stage_times(self, config: ReplicaConfig, prompt_lens: Sequence[int] | np.ndarray) -> np.ndarray:
        """Seconds each stage spends on one batched prefill of `prompt_lens` (no queueing)."""
        s = np.asarray(prompt_lens, dtype=np.float64)
        m = self.model
        tokens = float(s.sum())
        pairs = float((s * (s + 1) / 2).sum())
        out = np.empty(config.pp)
        for k, stage in enumerate(config.stages):
            last = k == config.pp - 1
            flops = stage.num_layers * (tokens * m.layer_linear_flops_per_token + pairs * m.attention_flops_per_token_context)
            nbytes = self.stage_weight_bytes(stage, first=k == 0, last=last)
            nbytes += stage.num_layers * tokens * m.kv_bytes_per_token_layer(self.kv_dtype_bytes)
            if last:
                flops += s.size * m.lm_head_flops_per_token
            out[k] = self._stage_time(stage, flops, nbytes, tokens * m.hidden_size * self.dtype_bytes)
        return out

    def _hop_time(self, config: ReplicaConfig, tokens: float) -> float:
        act = tokens * self.model.hidden_size * self.dtype_bytes
        return sum(h.time(act) for h in config.hops)

    def prefill_time(self, config: ReplicaConfig, prompt_lens: Sequence[int] | np.ndarray) -> float:
        """Latency of one batched prefill pass through the whole pipeline (first token ready)."""
        tokens = float(np.sum(prompt_lens))
        return float(self.prefill_stage_times(config, prompt_lens).sum()) + self._hop_time(config, tokens)

    def prefill_interval(self, config: ReplicaConfig, prompt_lens: Sequence[int] | np.ndarray) -> float:
        """Time between successive batches a pipelined replica can start (its bottleneck stage)."""
        return float(self.prefill_stage_times(config, prompt_lens).max())

    def decode_stage_times(self, config: ReplicaConfig, batch_size: int, mean_context: float) -> np.ndarray:
        """Seconds each stage spends on one decode step of `batch_size` sequences of `mean_context` tokens."""
        m = self.model
        b = float(batch_size)
        out = np.empty(config.pp)
        for k, stage in enumerate(config.stages):
            last = k == config.pp - 1
            flops = stage.num_layers * b * (m.layer_linear_flops_per_token + mean_context * m.attention_flops_per_token_context)
            nbytes = self.stage_weight_bytes(stage, first=k == 0, last=last)
            nbytes += stage.num_layers * b * mean_context * m.kv_bytes_per_token_layer(self.kv_dtype_bytes)
            if last:
                flops += b * m.lm_head_flops_per_token
            out[k] = self._stage_time(stage, flops, nbytes, b * m.hidden_size * self.dtype_bytes)
        return out

    def decode_step_time(self, config: ReplicaConfig, batch_size: int, mean_context: float) -> float:
        """Seconds per output token (TPOT) with `batch_size` sequences in flight (PP: micro-batched)."""
        batch_size = max(int(batch_size), 1)
        micro_batches = min(config.pp, batch_size)
        per_micro = math.ceil(batch_size / micro_batches)
        stages = self.decode_stage_times(config, per_micro, mean_context)
        cycle = float(stages.sum()) + self._hop_time(config, per_micro)
        return max(cycle, micro_batches * float(stages.max()))

    def decode_throughput(self, config: ReplicaConfig, batch_size: int, mean_context: float) -> float:
        """Output tokens/s at `batch_size` concurrent sequences."""
        return batch_size / self.decode_step_time(config, batch_size, mean_context)

    # ---- calibration --------------------------------------------------------------------------------------------
    def calibrate(self, profile: Iterable[ProfileSample], *, memory_gib: float | None = None) -> CostModel:
        """A copy whose constants for each profiled device type are fitted to measured step times."""
        from planner.calibrate import calibrate

        return calibrate(self, profile, memory_gib=memory_gib)


__all__ = [
    "ACTIVATION_TOKENS",
    "COMPUTE_EFFICIENCY",
    "KV_4BIT_COMPRESSION",
    "MEMORY_EFFICIENCY",
    "USABLE_MEMORY_FRACTION",
    "CostModel",
    "DeviceConstants",
    "kv_bytes_per_token",
    "kv_transfer_time",
]
