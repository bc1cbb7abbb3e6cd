"""KV handoff between a prefill and a decode device: engine KV -> `KVHandoff` message -> engine KV.

The sender exports the request's dense, page-size independent KV (``[L, 2, T, Hkv, D]``), packs it with
`kernels_ext.pack_kv` (int4 group-wise min-max with fp16 scale/min, or fp16/fp32 as is) and ships the
three buffers as raw tensor frames. The receiver dequantizes straight into the dtype of its own pages.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch

from kernels_ext import PackedKV, pack_kv, predict_wire_nbytes, unpack_kv
from thunder.runtime.messages import HandoffRecord, KVHandoff, Sampling

if TYPE_CHECKING:
    from thunder.runtime.engines import Engine

__all__ = ["export_handoff", "import_kv"]


def export_handoff(
    engine: Engine,
    *,
    request_id: str,
    prompt_token_ids: list[int],
    sampling: Sampling,
    first_token: int,
    src_replica: str,
    dst_replica: str,
    kv_dtype: str,
    group_size: int,
) -> tuple[KVHandoff, HandoffRecord]:
    """Pack a held request's KV for the wire and release its pages on `engine`.

    NOTE: the returned message owns fresh tensors (pack output, never a view of the KV pool), so the pages
    can be reused at once while the transport still writes the buffers.
    """
    start = time.perf_counter()
    try:
        kv = engine.export_kv(request_id)
        packed = pack_kv(kv, dtype=kv_dtype, group_size=group_size)  # type: ignore[arg-type]
        if packed.payload.data_ptr() == kv.data_ptr():
            packed = pack_kv(kv.clone(), dtype=kv_dtype, group_size=group_size)  # type: ignore[arg-type]
    finally:
        engine.release(request_id)
    header, _ = packed.to_wire()
    msg = KVHandoff(
        request_id=request_id,
        prompt_token_ids=prompt_token_ids,
        sampling=sampling,
        first_token=first_token,
        src_replica=src_replica,
        header=header,
        payload=packed.payload.cpu(),
        scales=packed.scales.cpu(),
        mins=packed.mins.cpu(),
    )
    record = HandoffRecord(
        request_id=request_id,
        dst_replica=dst_replica,
        wire_nbytes=packed.wire_nbytes,
        fp16_nbytes=predict_wire_nbytes(packed.shape, dtype="fp16"),
        seconds=time.perf_counter() - start,
    )
    return msg, record


def import_kv(msg: KVHandoff, *, dtype: torch.dtype, device: str = "cpu") -> torch.Tensor:
    """Dense ``[L, 2, T, Hkv, D]`` KV in `dtype` on `device` from a received handoff (validates the header)."""
    packed = PackedKV.from_wire(msg.header, [_bytes_of(t) for t in (msg.payload, msg.scales, msg.mins)])
    return unpack_kv(packed, out_dtype=dtype, device=device)


def _bytes_of(t: torch.Tensor) -> memoryview:
    return t.contiguous().view(torch.uint8).numpy().data.cast("B")
