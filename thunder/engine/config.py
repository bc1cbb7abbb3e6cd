"""Engine and request configuration: `EngineConfig`, `SamplingParams`, and dtype resolution."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from thunder.models import DEFAULT_MODEL

__all__ = ["ConfigError", "DType", "EngineConfig", "SamplingParams", "resolve_dtype"]

DType = Literal["auto", "bfloat16", "float16", "float32"]
_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the value and the fix."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineConfig:
    """One engine (one device). ``kv_cache_gib`` sizes the paged KV pool; ``max_num_batched_tokens`` is the
    per-step token budget shared by decodes and prefill chunks (chunked prefill)."""

    model: str = DEFAULT_MODEL
    dtype: DType = "auto"
    kv_cache_gib: float = 1.0
    page_size: int = 16
    max_num_seqs: int = 128
    max_num_batched_tokens: int = 2048
    max_model_len: int | None = None
    num_threads: int | None = None
    device: Literal["cpu", "cuda"] = "cpu"
    seed: int = 0
    enable_prefix_caching: bool = True
    layer_range: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.dtype not in ("auto", *_DTYPES):
            raise ConfigError(f"dtype={self.dtype!r}: choose 'auto', 'bfloat16', 'float16' or 'float32'")
        if self.page_size < 1 or self.page_size & (self.page_size - 1):
            raise ConfigError(f"page_size={self.page_size}: must be a power of two >= 1; try 16")
        if self.kv_cache_gib <= 0:
            raise ConfigError(f"kv_cache_gib={self.kv_cache_gib}: must be > 0; try 1.0")
        if self.max_num_seqs < 1:
            raise ConfigError(f"max_num_seqs={self.max_num_seqs}: must be >= 1; try 128")
        if self.max_num_batched_tokens < 1:
            raise ConfigError(f"max_num_batched_tokens={self.max_num_batched_tokens}: must be >= 1; try 2048")
        if self.num_threads is not None and self.num_threads < 1:
            raise ConfigError(f"num_threads={self.num_threads}: must be >= 1 or None (all cores)")
        if self.device not in ("cpu", "cuda"):
            raise ConfigError(f"device={self.device!r}: choose 'cpu' or 'cuda'")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device='cuda' but no CUDA device is visible; use device='cpu'")

    @property
    def threads(self) -> int:
        return self.num_threads or os.cpu_count() or 1


def resolve_dtype(dtype: DType, device: str) -> torch.dtype:
    """``"auto"``: bfloat16 where the device runs it fast (CUDA with bf16, CPU with AVX512-BF16/AMX), else
    float16 on CUDA and float32 on CPU."""
    if dtype != "auto":
        return _DTYPES[dtype]
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else torch.float32


@dataclass(frozen=True, slots=True, kw_only=True)
class SamplingParams:
    """Per-request decoding. ``temperature=0`` is greedy; ``top_k=0`` and ``top_p=1`` disable those filters.
    ``seed`` gives the request its own RNG (same output whatever else is batched with it)."""

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: Sequence[str] = ()
    stop_token_ids: Sequence[int] = ()
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "stop", tuple(self.stop))
        object.__setattr__(self, "stop_token_ids", tuple(int(t) for t in self.stop_token_ids))
        if self.max_tokens < 1:
            raise ConfigError(f"max_tokens={self.max_tokens}: must be >= 1")
        if self.temperature < 0:
            raise ConfigError(f"temperature={self.temperature}: must be >= 0 (0 = greedy)")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p={self.top_p}: must be in (0, 1]; 1 disables it")
        if self.top_k < 0:
            raise ConfigError(f"top_k={self.top_k}: must be >= 0; 0 disables it")
        if any(not s for s in self.stop):
            raise ConfigError(f"stop={list(self.stop)}: stop strings must be non-empty")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 or self.top_k == 1
