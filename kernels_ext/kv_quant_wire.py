"""Raw-buffer helpers for the KV wire format: tensors <-> flat byte memoryviews, header validation.

The header is a dict of plain values (str, int, list of int) that msgspec/JSON encode as is:
``{"format": "thunder.kv", "version": 1, "dtype", "shape", "source_dtype", "group_size", "nbytes"}``;
the buffers follow it in order ``payload, scales, mins`` (little-endian, as torch lays them out on x86/ARM).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from kernels_ext.kv_quant_ref import KVQuantError

WIRE_FORMAT = "thunder.kv"
WIRE_VERSION = 1
_HEADER_KEYS = ("format", "version", "dtype", "shape", "source_dtype", "group_size", "nbytes")


def tensor_to_buffer(tensor: torch.Tensor) -> memoryview:
    """A flat, byte-format memoryview of ``tensor``'s data (host copy only for non-CPU tensors)."""
    host = tensor.detach().contiguous().cpu()
    return host.view(torch.uint8).numpy().data.cast("B")


def buffer_to_tensor(buffer: Any, dtype: torch.dtype, count: int, name: str) -> torch.Tensor:
    """View ``buffer`` (bytes-like) as a 1-D tensor of ``count`` ``dtype`` elements, without copying.

    NOTE: a read-only buffer (``bytes``) yields a tensor that must not be written; unpacking only reads it.
    """
    view = memoryview(buffer).cast("B")
    expected = count * torch.empty(0, dtype=dtype).element_size()
    if view.nbytes != expected:
        raise KVQuantError(
            f"KV wire buffer {name!r}: {view.nbytes} bytes, but the header implies {expected} "
            f"({count} x {dtype}); the message was truncated or built for another shape"
        )
    if count == 0:
        return torch.empty(0, dtype=dtype)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not writable.*")
        raw = torch.frombuffer(view, dtype=torch.uint8)
    return raw.view(dtype)


def check_header(header: dict[str, Any], *, dtypes: tuple[str, ...], source_dtypes: tuple[str, ...]) -> None:
    """Raise KVQuantError naming the first missing or wrong header field."""
    missing = [key for key in _HEADER_KEYS if key not in header]
    if missing:
        raise KVQuantError(f"KV wire header lacks {missing}; it must come from PackedKV.to_wire()")
    if header["format"] != WIRE_FORMAT or header["version"] != WIRE_VERSION:
        raise KVQuantError(
            f"KV wire header format={header['format']!r} version={header['version']!r}: this build reads "
            f"{WIRE_FORMAT!r} version {WIRE_VERSION}; upgrade the older side"
        )
    if header["dtype"] not in dtypes:
        raise KVQuantError(f"KV wire header dtype={header['dtype']!r}: expected one of {dtypes}")
    if header["source_dtype"] not in source_dtypes:
        raise KVQuantError(
            f"KV wire header source_dtype={header['source_dtype']!r}: expected one of {source_dtypes}"
        )
    shape = header["shape"]
    if not isinstance(shape, list | tuple) or not all(isinstance(n, int) for n in shape):
        raise KVQuantError(f"KV wire header shape={shape!r}: expected a list of 5 ints")
    if not isinstance(header["group_size"], int):
        raise KVQuantError(f"KV wire header group_size={header['group_size']!r}: expected an int")
