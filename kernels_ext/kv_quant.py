"""KV compression for the prefill->decode wire: ``pack_kv`` / ``unpack_kv`` and the ``PackedKV`` wire object.

The input is a request's dense KV, ``[num_layers, 2, num_tokens, num_kv_heads, head_dim]`` (what an engine's
``export_kv`` returns; independent of page size and layout). ``int4`` is group-wise asymmetric min-max with an
fp16 scale and zero (min) per group of ``group_size`` consecutive elements along each token's flattened
``num_kv_heads * head_dim`` row (see ``kv_quant_ref`` for the exact rounding); ``fp16``/``fp32`` send the values
as they are. Compression is for the wire only: the receiver dequantizes into its own 16/32-bit pages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch

from kernels_ext.kv_quant_fast import dequantize_int4_fast, quantize_int4_fast
from kernels_ext.kv_quant_ref import KVQuantError, dequantize_int4_reference, quantize_int4_reference
from kernels_ext.kv_quant_wire import buffer_to_tensor, check_header, tensor_to_buffer

KVTransferDtype = Literal["int4", "fp16", "fp32"]
KV_TRANSFER_DTYPES: tuple[str, ...] = get_args(KVTransferDtype)
QuantImpl = Literal["fast", "reference"]
DEFAULT_GROUP_SIZE = 64

_SOURCE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_PLAIN_DTYPES = {"fp16": torch.float16, "fp32": torch.float32}
_KV_LAYOUT = "[num_layers, 2, num_tokens, num_kv_heads, head_dim]"


@dataclass(frozen=True, slots=True, kw_only=True)
class PackedKV:
    """One request's KV in wire form. Plain tensors and ints; build it with :func:`pack_kv` or ``from_wire``.

    ``payload``: int4 -> uint8 ``[ceil(numel / 2)]``, two codes per byte (low nibble first); fp16/fp32 -> the
    values, flat, in that dtype. ``scales``/``mins``: int4 -> fp16 ``[numel / group_size]``; otherwise empty.
    ``group_size`` is 0 for fp16/fp32. ``source_dtype`` is what ``unpack_kv`` returns by default.
    """

    dtype: KVTransferDtype
    shape: tuple[int, int, int, int, int]
    source_dtype: torch.dtype
    group_size: int
    payload: torch.Tensor
    scales: torch.Tensor
    mins: torch.Tensor

    def __post_init__(self) -> None:
        expected = wire_buffer_specs(self.shape, dtype=self.dtype, group_size=self.group_size)
        for name, (dtype, count) in zip(("payload", "scales", "mins"), expected, strict=True):
            tensor = getattr(self, name)
            if tensor.dtype != dtype or tensor.numel() != count or tensor.dim() != 1:
                raise KVQuantError(
                    f"PackedKV.{name}: got {tuple(tensor.shape)} {tensor.dtype}, expected [{count}] {dtype} for "
                    f"{self.dtype} KV of shape {self.shape} (group_size={self.group_size}); build it with pack_kv"
                )

    @property
    def num_tokens(self) -> int:
        return self.shape[2]

    @property
    def wire_nbytes(self) -> int:
        """Bytes of tensor data on the wire (the header adds a few dozen bytes more)."""
        return self.payload.nbytes + self.scales.nbytes + self.mins.nbytes

    def to_wire(self) -> tuple[dict[str, Any], list[memoryview]]:
        """``(header of plain values, [payload, scales, mins] as flat byte memoryviews)`` — no pickle.

        NOTE: CUDA tensors are copied to host here (synchronously); CPU tensors are exposed without copying.
        """
        header: dict[str, Any] = {
            "format": "thunder.kv",
            "version": 1,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "source_dtype": str(self.source_dtype).removeprefix("torch."),
            "group_size": self.group_size,
        }
        buffers = [tensor_to_buffer(t) for t in (self.payload, self.scales, self.mins)]
        header["nbytes"] = [b.nbytes for b in buffers]
        return header, buffers

    @classmethod
    def from_wire(cls, header: dict[str, Any], buffers: list[Any]) -> PackedKV:
        """Inverse of :meth:`to_wire`. ``buffers`` may be bytes, bytearray or memoryview (viewed, not copied).

        Raises KVQuantError naming the field when the header or a buffer does not match.
        """
        check_header(header, dtypes=KV_TRANSFER_DTYPES, source_dtypes=tuple(_SOURCE_DTYPES))
        shape = tuple(int(n) for n in header["shape"])
        _check_shape(shape)
        specs = wire_buffer_specs(shape, dtype=header["dtype"], group_size=int(header["group_size"]))
        if len(buffers) != len(specs):
            raise KVQuantError(
                f"KV wire: got {len(buffers)} buffers, expected {len(specs)} (payload, scales, mins)"
            )
        implied = [count * torch.empty(0, dtype=dtype).element_size() for dtype, count in specs]
        if list(header["nbytes"]) != implied:
            raise KVQuantError(
                f"KV wire header nbytes={header['nbytes']!r}, but its shape and dtype imply {implied}"
            )
        payload, scales, mins = (
            buffer_to_tensor(buf, dtype, count, name)
            for buf, (dtype, count), name in zip(buffers, specs, ("payload", "scales", "mins"), strict=True)
        )
        return cls(
            dtype=header["dtype"],
            shape=shape,  # type: ignore[arg-type]
            source_dtype=_SOURCE_DTYPES[header["source_dtype"]],
            group_size=int(header["group_size"]),
            payload=payload,
            scales=scales,
            mins=mins,
        )


def wire_buffer_specs(
    shape: tuple[int, ...], *, dtype: str, group_size: int
) -> list[tuple[torch.dtype, int]]:
    """``[(dtype, element count)]`` of the payload, scales and mins buffers for KV of ``shape``."""
    numel = math.prod(shape)
    if dtype == "int4":
        _check_group_size(shape, group_size)
        groups = numel // group_size
        return [(torch.uint8, (numel + 1) // 2), (torch.float16, groups), (torch.float16, groups)]
    if dtype in _PLAIN_DTYPES:
        if group_size != 0:
            raise KVQuantError(f"group_size={group_size} with dtype={dtype!r}: only int4 has groups; use 0")
        return [(_PLAIN_DTYPES[dtype], numel), (torch.float16, 0), (torch.float16, 0)]
    raise KVQuantError(f"dtype={dtype!r}: KV transfer dtype must be one of {KV_TRANSFER_DTYPES}; try 'int4'")


def predict_wire_nbytes(
    shape: tuple[int, ...], *, dtype: KVTransferDtype, group_size: int = DEFAULT_GROUP_SIZE
) -> int:
    """Bytes ``pack_kv`` will put on the wire for KV of ``shape`` (``group_size`` is ignored unless int4)."""
    specs = wire_buffer_specs(shape, dtype=dtype, group_size=group_size if dtype == "int4" else 0)
    return sum(count * torch.empty(0, dtype=dt).element_size() for dt, count in specs)


def pack_kv(
    kv: torch.Tensor,
    *,
    dtype: KVTransferDtype,
    group_size: int = DEFAULT_GROUP_SIZE,
    impl: QuantImpl = "fast",
) -> PackedKV:
    """Pack a request's KV for the wire.

    Args:
        kv: ``[num_layers, 2, num_tokens, num_kv_heads, head_dim]``, float32/float16/bfloat16, any device.
        dtype: ``"int4"`` (4-bit codes + fp16 scale/min per group), ``"fp16"`` or ``"fp32"``.
        group_size: int4 only — elements per group; must divide ``num_kv_heads * head_dim``.
        impl: ``"fast"`` (default) or ``"reference"`` (the oracle); both give bit-identical results.

    NOTE: for fp16/fp32, when ``kv`` already has that dtype and is contiguous, the payload aliases ``kv``.
    """
    _check_shape(tuple(kv.shape))
    source = str(kv.dtype).removeprefix("torch.")
    if source not in _SOURCE_DTYPES:
        raise KVQuantError(f"kv dtype {kv.dtype}: expected one of {sorted(_SOURCE_DTYPES)}; cast it first")
    shape = tuple(kv.shape)
    empty = torch.empty(0, dtype=torch.float16, device=kv.device)
    if dtype in _PLAIN_DTYPES:
        payload = kv.to(_PLAIN_DTYPES[dtype]).contiguous().view(-1)
        scales = mins = empty
        group_size = 0
    elif dtype == "int4":
        _check_group_size(shape, group_size)
        quantize = quantize_int4_fast if _impl(impl) == "fast" else quantize_int4_reference
        payload, scales, mins = quantize(kv.contiguous(), group_size)
    else:
        raise KVQuantError(
            f"dtype={dtype!r}: KV transfer dtype must be one of {KV_TRANSFER_DTYPES}; try 'int4'"
        )
    return PackedKV(
        dtype=dtype,
        shape=shape,  # type: ignore[arg-type]
        source_dtype=kv.dtype,
        group_size=group_size,
        payload=payload,
        scales=scales,
        mins=mins,
    )


def unpack_kv(
    packed: PackedKV,
    *,
    out_dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    impl: QuantImpl = "fast",
) -> torch.Tensor:
    """Dense KV of ``packed.shape`` in ``out_dtype`` (default: the sender's dtype) on ``device``.

    The compressed buffers are moved to ``device`` first (the cheap direction), then expanded there.
    """
    out_dtype = packed.source_dtype if out_dtype is None else out_dtype
    if not out_dtype.is_floating_point:
        raise KVQuantError(f"out_dtype={out_dtype}: KV must unpack to a float dtype; try torch.bfloat16")
    target = torch.device(device) if device is not None else packed.payload.device
    payload = packed.payload.to(target)
    if packed.dtype != "int4":
        return payload.to(out_dtype).view(packed.shape)
    dequantize = dequantize_int4_fast if _impl(impl) == "fast" else dequantize_int4_reference
    flat = dequantize(payload, packed.scales.to(target), packed.mins.to(target), packed.group_size, out_dtype)
    return flat.view(packed.shape)


def _impl(impl: str) -> str:
    if impl not in get_args(QuantImpl):
        raise KVQuantError(
            f"impl={impl!r}: must be one of {get_args(QuantImpl)}; the default 'fast' is right"
        )
    return impl


def _check_shape(shape: tuple[int, ...]) -> None:
    if len(shape) != 5 or shape[1] != 2 or any(n < 0 for n in shape):
        raise KVQuantError(f"kv shape {shape}: expected {_KV_LAYOUT} (dim 1 = key/value)")


def _check_group_size(shape: tuple[int, ...], group_size: int) -> None:
    row = shape[3] * shape[4]
    if isinstance(group_size, int) and group_size >= 1 and row % group_size == 0:
        return
    allowed = [d for d in range(1, row + 1) if row % d == 0]
    suggestion = max((d for d in allowed if d <= DEFAULT_GROUP_SIZE), default=row)
    raise KVQuantError(
        f"group_size={group_size!r}: int4 groups run along each token's num_kv_heads*head_dim = "
        f"{shape[3]}*{shape[4]} = {row} values, so group_size must divide {row} (divisors of head_dim "
        f"{shape[4]} keep a group inside one head); allowed: {allowed}; try {suggestion}"
    )
