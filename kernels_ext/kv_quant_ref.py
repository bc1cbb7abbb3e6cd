"""Torch reference for 4-bit group-wise asymmetric min-max KV quantization (the test oracle).

Scheme (FlexGen-style, one group = ``group_size`` consecutive elements of the flattened tensor, so a group
never crosses a token row when ``group_size`` divides ``num_kv_heads * head_dim``):

- ``min16`` = the group minimum rounded *down* to fp16, ``scale16`` = ``(max - min16) / 15`` rounded *up*
  to fp16. Directed rounding makes ``[min16, min16 + 15 * scale16]`` cover the whole group, so every element
  dequantizes to within ``scale16 / 2`` of its value (up to fp32 round-off).
- ``code = clamp(round((x - min16) * (1 / scale16)), 0, 15)`` (round half to even); a constant group whose
  scale is 0 gets ``1 / scale := 0`` and therefore code 0 — no NaN.
- Two codes per byte, element ``2i`` in the low nibble and ``2i + 1`` in the high nibble; an odd element
  count is padded with one zero nibble.
- ``x' = min16 + code * scale16`` computed in fp32. NOTE: the product is exact in fp32 (4-bit times 11-bit
  mantissa), so a fused multiply-add and a separate multiply then add give bit-identical results.

This module is written for clarity; ``kv_quant_fast`` must match it bit for bit.
"""

from __future__ import annotations

import torch

INT4_LEVELS = 15
FP16_MAX = 65504.0


class KVQuantError(ValueError):
    """Bad input to KV pack/unpack; the message names the value and the fix."""


def int4_group_params(group_min: torch.Tensor, group_max: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """fp16 ``(mins, scales)`` for fp32 per-group ``group_min``/``group_max`` of shape ``[G]``.

    Shared by the reference and the fast path (it touches only ``G`` values, not the data).
    Raises KVQuantError when a group holds a non-finite value or one outside the fp16 range.
    """
    lo = group_min.to(torch.float32)
    hi = group_max.to(torch.float32)
    # NOTE: NaN fails both comparisons, so this one check catches NaN, ±inf and fp16 overflow.
    if not bool(((lo >= -FP16_MAX) & (hi <= FP16_MAX)).all()):
        both = torch.cat([lo, hi])
        bad = both[~(both.abs() <= FP16_MAX)][0].item()
        raise KVQuantError(
            f"KV holds {bad!r}: int4 transfer needs finite values within ±{FP16_MAX:g} (fp16 scale and "
            "zero); send this request with dtype='fp32' or fix the NaN/overflow upstream"
        )
    mins = lo.to(torch.float16)
    mins = torch.where(
        mins.to(torch.float32) > lo, torch.nextafter(mins, torch.full_like(mins, -torch.inf)), mins
    )
    scale = (hi - mins.to(torch.float32)) / INT4_LEVELS
    scales = scale.to(torch.float16)
    scales = torch.where(
        scales.to(torch.float32) < scale, torch.nextafter(scales, torch.full_like(scales, torch.inf)), scales
    )
    return mins, scales


def inverse_scales(scales: torch.Tensor) -> torch.Tensor:
    """fp32 ``1 / scale`` per group, 0 where the scale is 0 (constant group)."""
    s = scales.to(torch.float32)
    return torch.where(s > 0, 1.0 / s, torch.zeros_like(s))


def pack_nibbles_reference(codes: torch.Tensor) -> torch.Tensor:
    """uint8 codes ``[N]`` in 0..15 -> uint8 bytes ``[ceil(N / 2)]`` (even index in the low nibble)."""
    if codes.numel() % 2:
        codes = torch.cat([codes, codes.new_zeros(1)])
    return codes[0::2] | (codes[1::2] << 4)


def unpack_nibbles_reference(packed: torch.Tensor, count: int) -> torch.Tensor:
    """uint8 bytes ``[ceil(count / 2)]`` -> uint8 codes ``[count]``."""
    codes = torch.stack([packed & 0x0F, packed >> 4], dim=-1).reshape(-1)
    return codes[:count]


def quantize_int4_reference(
    x: torch.Tensor, group_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Quantize ``x`` (any float dtype, ``numel % group_size == 0``) group-wise to 4 bits.

    Returns ``(packed uint8 [ceil(numel/2)], scales fp16 [G], mins fp16 [G])`` with ``G = numel / group_size``.
    """
    groups = x.reshape(-1, group_size).to(torch.float32)
    mins, scales = int4_group_params(groups.amin(dim=1), groups.amax(dim=1))
    inv = inverse_scales(scales)
    shifted = groups - mins.to(torch.float32)[:, None]
    codes = torch.round(shifted * inv[:, None]).clamp(0, INT4_LEVELS).to(torch.uint8)
    return pack_nibbles_reference(codes.reshape(-1)), scales, mins


def dequantize_int4_reference(
    packed: torch.Tensor, scales: torch.Tensor, mins: torch.Tensor, group_size: int, out_dtype: torch.dtype
) -> torch.Tensor:
    """Inverse of :func:`quantize_int4_reference`: a flat ``[G * group_size]`` tensor of ``out_dtype``."""
    count = scales.numel() * group_size
    codes = unpack_nibbles_reference(packed, count).reshape(-1, group_size).to(torch.float32)
    values = codes * scales.to(torch.float32)[:, None] + mins.to(torch.float32)[:, None]
    return values.reshape(-1).to(out_dtype)
