"""The wire codec: registered Structs, plain values, refs, ndarrays and torch tensors as raw buffers; no pickle."""

from __future__ import annotations

import struct

import msgspec
import numpy as np
import pytest
import torch

from actors import ActorRef, CodecError, message
from actors._codec import ALIGN, Codec
from actors._ref import UnroutableTarget


@message
class Blob(msgspec.Struct):
    name: str
    arr: np.ndarray
    t: torch.Tensor
    owner: ActorRef
    extra: list[object] = []


class Unregistered(msgspec.Struct):
    x: int


def _resolver(node: str, actor: int, name: str | None) -> ActorRef:
    return ActorRef(node, actor, name, UnroutableTarget("test"))


def roundtrip(msg: object, *, owned: bool = False) -> tuple[list[tuple[int, int, int, object]], bytes]:
    codec = Codec(_resolver)
    chunks: list[object] = []
    tail = codec.write_frame(chunks, bytearray(), 11, 7, 42, msg)
    wire = b"".join(bytes(c) for c in [*chunks, tail])  # type: ignore[arg-type]
    frames, pos = [], 0
    while pos < len(wire):
        (body_len,) = struct.unpack_from("<Q", wire, pos)
        body = memoryview(bytearray(wire[pos + 8 : pos + 8 + body_len]))
        frames.append(Codec(_resolver).decode(body, owned))
        pos += 8 + body_len
    return frames, wire


@pytest.mark.parametrize("owned", [True, False])
def test_struct_with_arrays_tensors_and_refs_roundtrips(owned: bool) -> None:
    arr = np.arange(12, dtype=np.float16).reshape(3, 4)[:, ::2]  # non-contiguous on purpose
    t = torch.randn(2, 3, 5).to(torch.bfloat16)
    ref = ActorRef("node-a", 9, "worker", UnroutableTarget("x"))
    [(kind, to, corr, got)], wire = roundtrip(Blob("b", arr, t, ref, extra=[1, "x", None]), owned=owned)
    assert (kind, to, corr) == (11, 7, 42)
    assert isinstance(got, Blob)
    np.testing.assert_array_equal(got.arr, arr)
    assert got.arr.dtype == np.float16 and got.arr.shape == (3, 2)
    assert got.t.dtype == torch.bfloat16 and torch.equal(got.t, t)
    assert got.owner == ref and got.owner.name == "worker"
    assert got.extra == [1, "x", None]
    assert b"pickle" not in wire and b"\x80\x04" not in wire[:64]  # msgpack, not a pickle stream


def test_raw_buffers_are_aligned_and_uncompressed() -> None:
    payload = np.full(1000, 7, dtype=np.int32)
    [(_, _, _, got)], wire = roundtrip({"a": payload, "b": np.zeros(3, dtype=np.uint8)})
    assert wire.count(payload.tobytes()) == 1  # the array's bytes are on the wire verbatim
    offset = wire.index(payload.tobytes()) - 8  # relative to the body
    assert offset % ALIGN == 0
    np.testing.assert_array_equal(got["a"], payload)
    got["a"][0] = 1  # received arrays are writable views of the receive buffer


def test_plain_values_and_empty_arrays() -> None:
    [(_, _, _, got)], _ = roundtrip([1, 2.5, "s", {"k": [None, True]}, np.zeros((0, 4)), torch.empty(0, 2)])
    assert got[:4] == [1, 2.5, "s", {"k": [None, True]}]
    assert got[4].shape == (0, 4) and tuple(got[5].shape) == (0, 2)


def test_unregistered_structs_and_unencodable_objects_are_refused_with_the_fix() -> None:
    codec = Codec(_resolver)
    tail = bytearray(b"kept")
    with pytest.raises(CodecError, match="@actors.message"):
        codec.write_frame([], tail, 10, 1, 0, Unregistered(1))
    with pytest.raises(CodecError, match="cannot encode"):
        codec.write_frame([], tail, 10, 1, 0, {"f": object()})
    with pytest.raises(CodecError, match="dtype object"):
        codec.write_frame([], tail, 10, 1, 0, np.array([object()]))
    assert tail == bytearray(b"kept")  # a failed encode leaves the batch untouched


def test_unknown_tags_fail_the_frame_not_the_decoder() -> None:
    from actors._codec import UndecodableFrame
    from actors._registry import _BY_CLASS, _BY_TAG

    @message(tag="tests:Temp")
    class Temp(msgspec.Struct):
        x: int

    codec = Codec(_resolver)
    tail = codec.write_frame([], bytearray(), 11, 3, 5, Temp(1))
    del _BY_TAG["tests:Temp"], _BY_CLASS[Temp]  # the receiver never imported the class
    with pytest.raises(UndecodableFrame, match="unknown message tag 'tests:Temp'") as info:
        codec.decode(memoryview(tail)[8:], owned=False)
    assert (info.value.kind, info.value.corr) == (11, 5)
