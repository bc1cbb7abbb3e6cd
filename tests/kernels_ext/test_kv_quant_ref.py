"""The int4 reference quantizer: exact codes, directed fp16 rounding of min/scale, nibble order, no NaN."""

from __future__ import annotations

import pytest
import torch

from kernels_ext.kv_quant_ref import (
    KVQuantError,
    dequantize_int4_reference,
    int4_group_params,
    pack_nibbles_reference,
    quantize_int4_reference,
    unpack_nibbles_reference,
)


def test_exact_codes_on_hand_made_groups() -> None:
    # group 0: min 0, max 15 -> scale 1, codes = values.
    # group 1: min -2, max 28 -> scale 2; -1 and 1 sit on .5 and round half to even (0 and 2).
    x = torch.tensor([0.0, 1.0, 2.0, 15.0, -2.0, -1.0, 1.0, 28.0])
    packed, scales, mins = quantize_int4_reference(x, 4)
    assert scales.tolist() == [1.0, 2.0]
    assert mins.tolist() == [0.0, -2.0]
    assert packed.dtype == torch.uint8
    # element 2i in the low nibble, 2i+1 in the high nibble
    assert packed.tolist() == [0 | 1 << 4, 2 | 15 << 4, 0 | 0 << 4, 2 | 15 << 4]
    out = dequantize_int4_reference(packed, scales, mins, 4, torch.float32)
    assert out.tolist() == [0.0, 1.0, 2.0, 15.0, -2.0, -2.0, 2.0, 28.0]


def test_min_rounds_down_and_scale_rounds_up_to_fp16() -> None:
    lo = torch.tensor([0.1, -0.3, 1000.3, 0.0])
    hi = torch.tensor([0.7, 0.2, 1000.9, 1e-9])
    mins, scales = int4_group_params(lo, hi)
    assert mins.dtype == scales.dtype == torch.float16
    up = torch.nextafter(mins, torch.full_like(mins, torch.inf)).float()
    assert bool((mins.float() <= lo).all()) and bool((up > lo).all())  # the largest fp16 not above min
    scale = (hi - mins.float()) / 15
    down = torch.nextafter(scales, torch.zeros_like(scales)).float()
    assert bool((scales.float() >= scale).all()) and bool((down < scale).all())  # the smallest fp16 not below
    assert bool((mins.float() + 15 * scales.float() >= hi).all())  # the grid covers the whole group


def test_constant_groups_give_scale_zero_and_no_nan() -> None:
    x = torch.cat([torch.zeros(8), torch.full((8,), -4.0), torch.full((8,), 0.1)])
    packed, scales, mins = quantize_int4_reference(x, 8)
    assert scales[:2].tolist() == [0.0, 0.0]
    assert packed[:8].tolist() == [0] * 8
    out = dequantize_int4_reference(packed, scales, mins, 8, torch.float32)
    assert not torch.isnan(out).any()
    assert out[:16].tolist() == x[:16].tolist()
    # 0.1 is not an fp16 value: min rounds below it, a tiny scale covers the gap, the error stays within scale/2
    assert float((out[16:] - 0.1).abs().max()) <= float(scales[2]) / 2 + 1e-7


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), 70000.0, -1e6])
def test_values_outside_fp16_range_are_rejected_with_the_fix(bad: float) -> None:
    x = torch.zeros(16)
    x[5] = bad
    with pytest.raises(KVQuantError, match="fp32"):
        quantize_int4_reference(x, 8)


@pytest.mark.parametrize("count", [0, 1, 2, 7, 8])
def test_nibble_pack_round_trip_including_odd_counts(count: int) -> None:
    codes = (torch.arange(count) * 7 % 16).to(torch.uint8)
    packed = pack_nibbles_reference(codes)
    assert packed.numel() == (count + 1) // 2
    if count % 2:
        assert int(packed[-1]) >> 4 == 0  # the pad nibble is zero
    assert torch.equal(unpack_nibbles_reference(packed, count), codes)
