"""Rotary position embedding (HF "rotate_half" form) with theta and scaling from the model config."""

from __future__ import annotations

import math
from typing import Any

import torch

from thunder.models.errors import UnsupportedModelError

__all__ = ["RotaryEmbedding", "rope_inv_freq"]


def rope_inv_freq(head_dim: int, theta: float, scaling: dict[str, Any] | None) -> torch.Tensor:
    """Inverse frequencies ``[head_dim // 2]`` (float32), after "linear" or "llama3" scaling."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    kind = (scaling or {}).get("rope_type", (scaling or {}).get("type", "default"))
    if kind == "default":
        return inv_freq
    assert scaling is not None
    factor = float(scaling["factor"])
    if kind == "linear":
        return inv_freq / factor
    if kind == "llama3":
        low, high = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
        old_len = float(scaling["original_max_position_embeddings"])
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
        smooth = (old_len / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
        return torch.where(medium, smoothed, scaled)
    raise UnsupportedModelError(
        f"rope_scaling type {kind!r} is not supported; thunder implements 'default', 'linear' and 'llama3'"
    )


class RotaryEmbedding:
    """Cached cos/sin tables; ``apply(x, positions)`` rotates ``x [T, H, D]`` by each token's position."""

    def __init__(
        self,
        *,
        head_dim: int,
        theta: float,
        scaling: dict[str, Any] | None,
        max_positions: int,
        dtype: torch.dtype,
        device: torch.device | str = "cpu",
    ) -> None:
        inv_freq = rope_inv_freq(head_dim, theta, scaling)
        freqs = torch.outer(torch.arange(max_positions, dtype=torch.float32), inv_freq)
        # NOTE: computed in float32 then cast, as HF does, so bf16 tables match the reference model.
        # Stored "full width" so rotation is x * cos + cat(x2, x1) * sin_signed: three ops per call.
        cos, sin = freqs.cos(), freqs.sin()
        self.cos = torch.cat((cos, cos), dim=-1).to(device=device, dtype=dtype)
        self.sin_signed = torch.cat((-sin, sin), dim=-1).to(device=device, dtype=dtype)
        self.max_positions = max_positions

    def tables(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/signed-sin ``[T, 1, D]`` for ``positions [T]`` (int64); once per step, shared by all layers."""
        return self.cos[positions].unsqueeze(1), self.sin_signed[positions].unsqueeze(1)

    @staticmethod
    def apply(x: torch.Tensor, cos: torch.Tensor, sin_signed: torch.Tensor) -> torch.Tensor:
        """Rotate ``x [T, H, D]`` (HF rotate-half form); returns a new contiguous tensor."""
        half = x.shape[-1] // 2
        rotated = torch.cat((x[..., half:], x[..., :half]), dim=-1)
        return torch.addcmul(x * cos, rotated, sin_signed)
