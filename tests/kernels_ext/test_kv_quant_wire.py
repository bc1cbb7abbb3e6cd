"""PackedKV <-> (header, raw buffers): msgspec-encodable, no pickle, strict about what it reads."""

from __future__ import annotations

import msgspec
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels_ext import KVQuantError, PackedKV, pack_kv, unpack_kv


def _kv(shape: tuple[int, ...], dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    return (torch.randn(shape, generator=torch.Generator().manual_seed(1)) * 2).to(dtype)


def _over_the_wire(packed: PackedKV) -> PackedKV:
    """What a transport does: msgpack the header, ship the buffers as bytes, rebuild on the far side."""
    header, buffers = packed.to_wire()
    assert all(isinstance(b, memoryview) and b.format == "B" and b.ndim == 1 for b in buffers)
    frame = msgspec.msgpack.encode({"header": header, "buffers": [bytes(b) for b in buffers]})
    received = msgspec.msgpack.decode(frame)
    return PackedKV.from_wire(received["header"], received["buffers"])


@pytest.mark.parametrize("wire", ["int4", "fp16", "fp32"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_wire_round_trip_is_lossless(wire: str, dtype: torch.dtype) -> None:
    packed = pack_kv(_kv((3, 2, 9, 3, 64), dtype), dtype=wire)  # type: ignore[arg-type]
    back = _over_the_wire(packed)
    assert (back.dtype, back.shape, back.source_dtype, back.group_size) == (
        packed.dtype,
        packed.shape,
        packed.source_dtype,
        packed.group_size,
    )
    assert torch.equal(back.payload, packed.payload)
    assert torch.equal(back.scales, packed.scales) and torch.equal(back.mins, packed.mins)
    assert torch.equal(unpack_kv(back), unpack_kv(packed))


def test_header_is_plain_values_and_nbytes_frame_the_buffers() -> None:
    packed = pack_kv(_kv((2, 2, 5, 3, 64)), dtype="int4", group_size=32)
    header, buffers = packed.to_wire()
    assert header == {
        "format": "thunder.kv",
        "version": 1,
        "dtype": "int4",
        "shape": [2, 2, 5, 3, 64],
        "source_dtype": "bfloat16",
        "group_size": 32,
        "nbytes": [1920, 240, 240],
    }
    assert [b.nbytes for b in buffers] == header["nbytes"]
    assert sum(header["nbytes"]) == packed.wire_nbytes
    assert msgspec.json.decode(msgspec.json.encode(header)) == header


def test_from_wire_views_a_writable_buffer_without_copying() -> None:
    packed = pack_kv(_kv((1, 2, 4, 1, 8)), dtype="int4", group_size=8)
    header, buffers = packed.to_wire()
    payload = bytearray(buffers[0])
    back = PackedKV.from_wire(header, [payload, bytes(buffers[1]), bytes(buffers[2])])
    payload[0] ^= 0xFF
    assert int(back.payload[0]) == int(packed.payload[0]) ^ 0xFF


def test_truncated_buffer_is_named() -> None:
    header, buffers = pack_kv(_kv((1, 2, 4, 2, 8)), dtype="int4", group_size=8).to_wire()
    with pytest.raises(KVQuantError, match="'payload': 63 bytes, but the header implies 64"):
        PackedKV.from_wire(header, [bytes(buffers[0])[:-1], buffers[1], buffers[2]])
    with pytest.raises(KVQuantError, match="got 2 buffers, expected 3"):
        PackedKV.from_wire(header, buffers[:2])


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"version": 2}, "version 1; upgrade"),
        ({"format": "other"}, "format='other'"),
        ({"dtype": "int8"}, "dtype='int8'"),
        ({"source_dtype": "float64"}, "source_dtype='float64'"),
        ({"shape": [1, 2, 4, 16]}, r"expected \[num_layers, 2"),
        ({"shape": "1,2,4,2,8"}, "list of 5 ints"),
        ({"group_size": 5}, "group_size=5"),
        ({"nbytes": [64, 16, 16]}, r"nbytes=\[64, 16, 16\], but its shape and dtype imply \[64, 32, 32\]"),
    ],
)
def test_bad_header_fields_are_named(change: dict, match: str) -> None:
    header, buffers = pack_kv(_kv((1, 2, 4, 2, 8)), dtype="int4", group_size=8).to_wire()
    with pytest.raises(KVQuantError, match=match):
        PackedKV.from_wire({**header, **change}, buffers)
    with pytest.raises(KVQuantError, match=r"lacks \['nbytes'\]"):
        PackedKV.from_wire({k: v for k, v in header.items() if k != "nbytes"}, buffers)


@settings(max_examples=60, deadline=None)
@given(
    tokens=st.integers(0, 5),
    head_dim=st.sampled_from([1, 3, 4]),
    wire=st.sampled_from(["int4", "fp16", "fp32"]),
    seed=st.integers(0, 2**16),
)
def test_wire_round_trip_property(tokens: int, head_dim: int, wire: str, seed: int) -> None:
    kv = torch.randn((2, 2, tokens, 3, head_dim), generator=torch.Generator().manual_seed(seed))
    packed = pack_kv(kv, dtype=wire, group_size=head_dim)  # type: ignore[arg-type]
    assert torch.equal(unpack_kv(_over_the_wire(packed)), unpack_kv(packed))
