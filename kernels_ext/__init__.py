"""kernels_ext: paged-KV attention, KV append/gather and 4-bit KV pack/unpack.

FlashInfer on CUDA (imported lazily), a torch reference on CPU that is also the test oracle.
"""

from kernels_ext.attention import AttentionBackend, PagedAttention
from kernels_ext.kv_quant import (
    KV_TRANSFER_DTYPES,
    KVQuantError,
    KVTransferDtype,
    PackedKV,
    pack_kv,
    predict_wire_nbytes,
    unpack_kv,
)
from kernels_ext.linear import PrepackedLinear, prepack_supported
from kernels_ext.paged_kv import (
    allocate_paged_kv_cache,
    append_paged_kv,
    gather_paged_kv,
    get_batch_indices_positions,
    get_seq_lens,
    kv_token_slots,
    write_kv_rows,
)

__all__ = [
    "KV_TRANSFER_DTYPES",
    "KVQuantError",
    "KVTransferDtype",
    "PackedKV",
    "pack_kv",
    "predict_wire_nbytes",
    "unpack_kv",
    "AttentionBackend",
    "PagedAttention",
    "PrepackedLinear",
    "allocate_paged_kv_cache",
    "append_paged_kv",
    "gather_paged_kv",
    "get_batch_indices_positions",
    "get_seq_lens",
    "kv_token_slots",
    "prepack_supported",
    "write_kv_rows",
]
