"""pack_kv / unpack_kv: shapes, dtypes, error bounds, sizes on the wire, and clear errors."""

from __future__ import annotations

import pytest
import torch

from kernels_ext import KVQuantError, PackedKV, pack_kv, predict_wire_nbytes, unpack_kv

SMOLLM2_KV = (30, 2, 37, 3, 64)  # layers, K/V, tokens, kv heads, head_dim of SmolLM2-135M


def _kv(shape: tuple[int, ...], dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    # KV-like: per-channel offsets and a few outliers, as real keys have
    base = torch.randn(shape, generator=gen) * 2 + torch.randn(shape[-1], generator=gen) * 3
    return base.to(dtype)


def assert_within_half_scale(x: torch.Tensor, packed: PackedKV) -> None:
    """|x - deq| <= scale/2 per element (plus fp32 round-off), dequantized to fp32."""
    out = unpack_kv(packed, out_dtype=torch.float32)
    g = packed.group_size
    err = (x.float() - out).reshape(-1, g)
    half = packed.scales.float()[:, None] / 2
    slack = 1e-6 * (x.float().abs().reshape(-1, g) + packed.mins.float().abs()[:, None] + 16 * half)
    assert bool((err.abs() <= half + slack).all()), float((err.abs() - half).max())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("group_size", [64, 32, 192, 3])
def test_int4_round_trip_is_within_half_a_step(dtype: torch.dtype, group_size: int) -> None:
    x = _kv(SMOLLM2_KV, dtype)
    packed = pack_kv(x, dtype="int4", group_size=group_size)
    assert packed.shape == SMOLLM2_KV and packed.num_tokens == 37
    assert packed.payload.dtype == torch.uint8 and packed.scales.dtype == packed.mins.dtype == torch.float16
    assert_within_half_scale(x, packed)
    out = unpack_kv(packed)
    assert out.shape == x.shape and out.dtype == dtype  # default: the sender's dtype


def test_unpack_to_another_dtype_equals_fp32_unpack_cast() -> None:
    packed = pack_kv(_kv(SMOLLM2_KV, torch.bfloat16), dtype="int4")
    as_fp32 = unpack_kv(packed, out_dtype=torch.float32)
    for out_dtype in (torch.float16, torch.bfloat16):
        assert torch.equal(unpack_kv(packed, out_dtype=out_dtype), as_fp32.to(out_dtype))


@pytest.mark.parametrize("wire", ["fp16", "fp32"])
def test_plain_dtypes_send_the_values_as_they_are(wire: str) -> None:
    x = _kv((2, 2, 5, 2, 8), torch.bfloat16)
    packed = pack_kv(x, dtype=wire)  # type: ignore[arg-type]
    assert packed.group_size == 0 and packed.scales.numel() == 0
    out = unpack_kv(packed)
    assert out.dtype == torch.bfloat16 and torch.equal(out, x)  # bf16 -> fp16/fp32 -> bf16 is exact here


@pytest.mark.parametrize(
    "shape",
    [(1, 2, 0, 3, 64), (1, 2, 1, 1, 1), (3, 2, 5, 7, 3), (2, 2, 9, 1, 5), (1, 2, 3, 5, 1)],
    ids=["no-tokens", "one-element", "odd-heads-odd-dim", "odd-row", "head_dim-1"],
)
def test_odd_shapes_round_trip(shape: tuple[int, ...]) -> None:
    x = _kv(shape)
    row = shape[3] * shape[4]
    for group_size in [d for d in range(1, row + 1) if row % d == 0]:
        packed = pack_kv(x, dtype="int4", group_size=group_size)
        assert packed.payload.numel() == (x.numel() + 1) // 2
        assert unpack_kv(packed).shape == x.shape
        if x.numel():
            assert_within_half_scale(x, packed)


def test_constant_kv_has_no_nan_and_exact_zeros() -> None:
    x = torch.zeros(SMOLLM2_KV)
    x[1] = 0.25
    out = unpack_kv(pack_kv(x, dtype="int4"))
    assert torch.equal(out, x)


@pytest.mark.parametrize("dtype", ["int4", "fp16", "fp32"])
def test_predicted_bytes_match_packed_bytes(dtype: str) -> None:
    x = _kv((2, 2, 11, 3, 64))
    packed = pack_kv(x, dtype=dtype)  # type: ignore[arg-type]
    assert packed.wire_nbytes == predict_wire_nbytes(x.shape, dtype=dtype)  # type: ignore[arg-type]


def test_int4_with_group_64_is_over_3_5x_smaller_than_fp16() -> None:
    fp16 = predict_wire_nbytes(SMOLLM2_KV, dtype="fp16")
    int4 = predict_wire_nbytes(SMOLLM2_KV, dtype="int4", group_size=64)
    # 4 bits per value + 2 x 16 bits per 64 values = 4.5 bits: 16 / 4.5 = 3.56x
    assert fp16 / int4 == pytest.approx(16 / 4.5)


def test_group_size_error_lists_allowed_sizes_and_a_fix() -> None:
    with pytest.raises(KVQuantError) as info:
        pack_kv(_kv(SMOLLM2_KV), dtype="int4", group_size=128)
    message = str(info.value)
    assert "group_size=128" in message and "192" in message and "try 64" in message
    assert "allowed: [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 192]" in message
    with pytest.raises(KVQuantError, match="group_size=0"):
        pack_kv(_kv(SMOLLM2_KV), dtype="int4", group_size=0)


@pytest.mark.parametrize(
    ("kv", "kwargs", "match"),
    [
        (torch.zeros(2, 5, 3, 64), {"dtype": "int4"}, r"expected \[num_layers, 2, num_tokens"),
        (torch.zeros(1, 3, 5, 3, 64), {"dtype": "int4"}, "dim 1 = key/value"),
        (torch.zeros(1, 2, 5, 3, 64, dtype=torch.int32), {"dtype": "int4"}, "cast it first"),
        (torch.zeros(1, 2, 5, 3, 64), {"dtype": "int8"}, "try 'int4'"),
        (torch.zeros(1, 2, 5, 3, 64), {"dtype": "int4", "impl": "cuda"}, "impl='cuda'"),
    ],
)
def test_bad_input_names_the_value(kv: torch.Tensor, kwargs: dict, match: str) -> None:
    with pytest.raises(KVQuantError, match=match):
        pack_kv(kv, **kwargs)


def test_overflowing_kv_suggests_fp32_transfer() -> None:
    x = _kv((1, 2, 4, 1, 64))
    x[0, 1, 2, 0, 7] = 1e5
    with pytest.raises(KVQuantError, match="dtype='fp32'"):
        pack_kv(x, dtype="int4")
    assert torch.equal(unpack_kv(pack_kv(x, dtype="fp32")), x)


def test_unpack_rejects_integer_out_dtype() -> None:
    with pytest.raises(KVQuantError, match="out_dtype=torch.int8"):
        unpack_kv(pack_kv(_kv((1, 2, 2, 1, 8)), dtype="int4", group_size=8), out_dtype=torch.int8)


def test_inconsistent_packed_kv_is_refused() -> None:
    good = pack_kv(_kv((1, 2, 4, 1, 8)), dtype="int4", group_size=8)
    with pytest.raises(KVQuantError, match=r"PackedKV.scales.*expected \[8\]"):
        PackedKV(
            dtype="int4",
            shape=good.shape,
            source_dtype=torch.float32,
            group_size=8,
            payload=good.payload,
            scales=good.scales[:4],
            mins=good.mins,
        )
