"""Analytical step-time and memory model for one replica (roofline per stage + α-β links).

Per stage of `l` layers, TP degree `t`, device constants (F FLOP/s, B bytes/s, overhead o, KV-read bandwidth A):
    time = o + max(FLOPs / (t·F), bytes / (t·B)) + KV bytes read / (t·A)
           + TP all-reduce (2 per layer, ring: 2(t-1)α + 2(t-1)/t · msg/β)
The attention term KV/A is time the roofline does not overlap: on a CPU each layer's attention reads every
sequence's KV pages between its matmuls, not alongside the weight stream, so a decode step grows with
batch × context beyond the weight read.
GPU kernels read KV in place, overlapped with the weights (inside the roofline's bytes), so catalog devices have
A = inf (no extra term); `calibrate()` fits A when the profile has decode steps at several contexts.
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
from dataclasses import dataclass, field, replace
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
    kv_read_bw: float = math.inf
    """bytes/s at which attention reads the KV cache *in addition to* the roofline (inf: no extra term)."""

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
    _per_layer: tuple[float, float, float, float] = field(init=False, repr=False, default=(0.0, 0.0, 0.0, 0.0))

    def __post_init__(self) -> None:
        # NOTE: hot path of the search; cache (linear FLOPs/token, attention FLOPs/pair, weight bytes, KV bytes/token)
        m = self.model
        object.__setattr__(self, "_per_layer", (
            float(m.layer_linear_flops_per_token), float(m.attention_flops_per_token_context),
            float(m.layer_params * self.dtype_bytes), float(m.kv_bytes_per_token_layer(self.kv_dtype_bytes))))

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
        return stage.num_layers * self.model.layer_params * self.dtype_bytes + self._edge_weight_bytes(first=first, last=last)

    def kv_transfer_time(self, tokens: float, link: Link, *, compressed: bool = True) -> float:
        """Time to move the KV of `tokens` prompt tokens between replicas over `link`."""
        ratio = self.kv_compression if compressed else 1.0
        return kv_transfer_time(tokens * self.kv_bytes_per_token, link, ratio)

    # ---- memory -------------------------------------------------------------------------------------------------
    def activation_bytes(self) -> float:
        m = self.model
        return float(self.activation_tokens * (4 * m.hidden_size + 3 * m.intermediate_size) * self.dtype_bytes)

    def stage_free_bytes(self, stage: StageConfig, layers: np.ndarray | float, *, first: bool, last: bool) -> np.ndarray:
        """Bytes left for KV on a stage holding `layers` layers (scalar or array)."""
        c = self.constants(stage.gpu_type)
        weights = np.asarray(layers, dtype=np.float64) * self.model.layer_params * self.dtype_bytes
        return c.memory_bytes * stage.tp - weights - self._edge_weight_bytes(first=first, last=last) - self.activation_bytes()

    def max_kv_tokens(self, config: ReplicaConfig) -> int:
        """KV tokens (all layers) the replica can hold after weights and activations; <= 0 means it does not fit."""
        per_layer = self.model.kv_bytes_per_token_layer(self.kv_dtype_bytes)
        last = config.pp - 1
        return int(min(float(self.stage_free_bytes(st, st.num_layers, first=k == 0, last=k == last)) / (st.num_layers * per_layer)
                       for k, st in enumerate(config.stages)))

    def memory_fits(self, config: ReplicaConfig, kv_tokens: int = 0) -> bool:
        """Whether weights, activations and `kv_tokens` of KV fit on every stage."""
        return self.max_kv_tokens(config) >= max(kv_tokens, 1)

    # ---- stage times --------------------------------------------------------------------------------------------
    def stage_cost(self, stage: StageConfig, layers: np.ndarray | float, *, first: bool, last: bool,
                   tokens: np.ndarray | float, attn_pairs: np.ndarray | float, kv_tokens: np.ndarray | float,
                   heads: np.ndarray | float) -> np.ndarray:
        """Roofline time of one stage holding `layers` layers (scalar or array, for the layer-split DP).

        tokens: tokens through the linear layers; attn_pairs: (query, context) pairs; kv_tokens: KV tokens written
        (prefill) or read (decode); heads: tokens that need logits. All-reduce messages are tokens·hidden·dtype.
        """
        m = self.model
        c = self.constants(stage.gpu_type)
        t = stage.tp
        lin, attn, layer_bytes, kvl = self._per_layer
        flops = layers * (tokens * lin + attn_pairs * attn)
        nbytes = layers * (layer_bytes + kv_tokens * kvl) + self._edge_weight_bytes(first=first, last=last)
        if last:
            flops = flops + heads * m.lm_head_flops_per_token
        time = c.overhead_s + np.maximum(flops / (t * c.flops), nbytes / (t * c.mem_bw))
        if math.isfinite(c.kv_read_bw):
            time = time + layers * kv_tokens * kvl / (t * c.kv_read_bw)
        if t > 1:
            msg = tokens * m.hidden_size * self.dtype_bytes
            per_allreduce = 2 * (t - 1) * stage.tp_latency + 2 * (t - 1) / t * msg / stage.tp_bandwidth
            time = time + 2 * layers * per_allreduce
        return time

    def _edge_weight_bytes(self, *, first: bool, last: bool) -> float:
        m = self.model
        params = m.embedding_params if first else 0
        if last and not (first and m.tie_word_embeddings):
            params += m.lm_head_params
        return float(params * self.dtype_bytes)

    @staticmethod
    def prefill_load(prompt_lens: Sequence[int] | np.ndarray) -> dict[str, float]:
        """`stage_cost` keyword arguments for one batched prefill of `prompt_lens`."""
        s = np.asarray(prompt_lens, dtype=np.float64)
        tokens = float(s.sum())
        return {"tokens": tokens, "attn_pairs": float((s * (s + 1) / 2).sum()), "kv_tokens": tokens,
                "heads": float(s.size)}

    @staticmethod
    def decode_load(batch_size: float, mean_context: float) -> dict[str, float]:
        """`stage_cost` keyword arguments for one decode step of `batch_size` sequences."""
        return {"tokens": batch_size, "attn_pairs": batch_size * mean_context, "kv_tokens": batch_size * mean_context,
                "heads": batch_size}

    def _stage_times(self, config: ReplicaConfig, load: dict[str, float]) -> np.ndarray:
        last = config.pp - 1
        return np.array([float(self.stage_cost(st, st.num_layers, first=k == 0, last=k == last, **load))
                         for k, st in enumerate(config.stages)])

    def prefill_stage_times(self, config: ReplicaConfig, prompt_lens: Sequence[int] | np.ndarray) -> np.ndarray:
        """Seconds each stage spends on one batched prefill of `prompt_lens` (no queueing)."""
        return self._stage_times(config, self.prefill_load(prompt_lens))

    def hop_time(self, config: ReplicaConfig, tokens: float) -> float:
        """Total PP hop time for `tokens` tokens of activations."""
        act = tokens * self.model.hidden_size * self.dtype_bytes
        return sum(h.time(act) for h in config.hops)

    def prefill_time(self, config: ReplicaConfig, prompt_lens: Sequence[int] | np.ndarray) -> float:
        """Latency of one batched prefill pass through the whole pipeline (first token ready)."""
        tokens = float(np.sum(prompt_lens))
        return float(self.prefill_stage_times(config, prompt_lens).sum()) + self.hop_time(config, tokens)

    def prefill_interval(self, config: ReplicaConfig, prompt_lens: Sequence[int] | np.ndarray) -> float:
        """Time between successive batches a pipelined replica can start (its bottleneck stage)."""
        return float(self.prefill_stage_times(config, prompt_lens).max())

    def decode_stage_times(self, config: ReplicaConfig, batch_size: int, mean_context: float) -> np.ndarray:
        """Seconds each stage spends on one decode step of `batch_size` sequences of `mean_context` tokens."""
        return self._stage_times(config, self.decode_load(batch_size, mean_context))

    def decode_step_time(self, config: ReplicaConfig, batch_size: int, mean_context: float) -> float:
        """Seconds per output token (TPOT) with `batch_size` sequences in flight (PP: micro-batched)."""
        batch_size = max(int(batch_size), 1)
        micro_batches = min(config.pp, batch_size)
        per_micro = math.ceil(batch_size / micro_batches)
        stages = self.decode_stage_times(config, per_micro, mean_context)
        cycle = float(stages.sum()) + self.hop_time(config, per_micro)
        return max(cycle, micro_batches * float(stages.max()))

    def decode_step_times(self, config: ReplicaConfig, batch_sizes: np.ndarray, mean_context: float) -> np.ndarray:
        """`decode_step_time` for each of `batch_sizes` (ints >= 1) at once, element for element the same value."""
        b = np.maximum(np.asarray(batch_sizes, dtype=np.int64), 1)
        micro = np.minimum(config.pp, b)
        per_micro = -(-b // micro)
        load = self.decode_load(per_micro.astype(np.float64), mean_context)  # type: ignore[arg-type]
        last = config.pp - 1
        stages = np.stack([np.broadcast_to(self.stage_cost(st, st.num_layers, first=k == 0, last=k == last, **load),
                                           b.shape) for k, st in enumerate(config.stages)], axis=-1)
        act = per_micro * self.model.hidden_size * self.dtype_bytes
        cycle = stages.sum(axis=-1) + sum((h.time(act) for h in config.hops), np.zeros(b.shape))  # type: ignore[arg-type]
        return np.maximum(cycle, micro * stages.max(axis=-1))

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
