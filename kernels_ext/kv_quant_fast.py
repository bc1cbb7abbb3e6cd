"""Fast 4-bit KV quantization: same codes, scales and values as ``kv_quant_ref``, bit for bit.

Where the time goes in the reference, and what this path does instead (CPU, measured by
``benchmarks/kv_compression.py``):

- The reference materialises five full-size temporaries (fp32 copy, shifted, scaled, rounded, codes). Here the
  data is walked in cache-sized chunks of whole groups with one reusable fp32 buffer and in-place ops.
- ``amin``/``amax`` run on the fp32 chunk: torch's reductions over a short inner axis are several times faster
  on fp32 than on bf16/fp16, and ``aminmax`` is slower than both.
- Nibble packing is one strided ``lo + 16 * hi`` on exact small integers in fp32, then one cast to uint8,
  instead of three uint8 kernels.
- Unpacking looks each byte up in a ``[256, 2]`` fp32 table (both codes at once, already as floats), then one
  ``addcmul`` dequantizes and writes the caller's dtype.

On CUDA the same ops run with a single chunk (the chunking only pays for CPU caches).
"""

from __future__ import annotations

import torch

from kernels_ext.kv_quant_ref import int4_group_params, inverse_scales

# Elements per chunk (4 MiB of fp32 scratch): best of 2^14..2^22 on this 2-core machine (smaller chunks pay
# per-chunk Python overhead, larger ones fall out of cache).
CHUNK_ELEMENTS = 1 << 20

_BYTE_TO_CODES: dict[torch.device, torch.Tensor] = {}


def _byte_table(device: torch.device) -> torch.Tensor:
    """fp32 ``[256, 2]``: row ``b`` holds ``(b & 15, b >> 4)``."""
    table = _BYTE_TO_CODES.get(device)
    if table is None:
        byte = torch.arange(256, device=device)
        table = torch.stack([byte & 0x0F, byte >> 4], dim=-1).to(torch.float32)
        _BYTE_TO_CODES[device] = table
    return table


def _groups_per_chunk(group_size: int, num_groups: int, device: torch.device) -> int:
    if device.type != "cpu":
        return max(num_groups, 1)
    per_chunk = max(CHUNK_ELEMENTS // group_size, 1)
    # NOTE: an even number of groups keeps every chunk's element count even when group_size is odd, so a
    # packed byte never straddles two chunks.
    return per_chunk + (per_chunk % 2)


def quantize_int4_fast(x: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Same contract and bit-identical output as :func:`kv_quant_ref.quantize_int4_reference`."""
    groups = x.reshape(-1, group_size)
    num_groups = groups.shape[0]
    numel = groups.numel()
    packed = torch.empty((numel + 1) // 2, dtype=torch.uint8, device=x.device)
    scales = torch.empty(num_groups, dtype=torch.float16, device=x.device)
    mins = torch.empty(num_groups, dtype=torch.float16, device=x.device)
    step = _groups_per_chunk(group_size, num_groups, x.device)
    scratch = torch.empty(min(step, num_groups) * group_size, dtype=torch.float32, device=x.device)
    for g0 in range(0, num_groups, step):
        g1 = min(g0 + step, num_groups)
        chunk = scratch[: (g1 - g0) * group_size].view(g1 - g0, group_size)
        chunk.copy_(groups[g0:g1])
        chunk_mins, chunk_scales = int4_group_params(chunk.amin(dim=1), chunk.amax(dim=1))
        mins[g0:g1] = chunk_mins
        scales[g0:g1] = chunk_scales
        chunk.sub_(chunk_mins.to(torch.float32)[:, None]).mul_(inverse_scales(chunk_scales)[:, None]).round_()
        # NOTE: no clamp needed (the reference has one): x >= min16 and max <= min16 + 15 * scale16 by the
        # directed rounding, so (x - min16) / scale16 lies in [0, 15 + fp32 round-off] and rounds into 0..15.
        _pack_pairs(chunk.view(-1), packed[g0 * group_size // 2 : (g1 * group_size + 1) // 2])
    return packed, scales, mins


def _pack_pairs(codes: torch.Tensor, out: torch.Tensor) -> None:
    """fp32 integer codes ``[N]`` -> ``out`` uint8 ``[ceil(N / 2)]``; an odd tail gets a zero high nibble."""
    even = codes.numel() - codes.numel() % 2
    pairs = codes[:even].view(-1, 2)
    out[: even // 2].copy_(torch.add(pairs[:, 0], pairs[:, 1], alpha=16))
    if even < codes.numel():
        out[-1:].copy_(codes[-1:])


def dequantize_int4_fast(
    packed: torch.Tensor, scales: torch.Tensor, mins: torch.Tensor, group_size: int, out_dtype: torch.dtype
) -> torch.Tensor:
    """Same contract and bit-identical output as :func:`kv_quant_ref.dequantize_int4_reference`."""
    num_groups = scales.numel()
    out = torch.empty(num_groups * group_size, dtype=out_dtype, device=packed.device)
    table = _byte_table(packed.device)
    step = _groups_per_chunk(group_size, num_groups, packed.device)
    for g0 in range(0, num_groups, step):
        g1 = min(g0 + step, num_groups)
        lo, hi = g0 * group_size, g1 * group_size
        codes = torch.index_select(table, 0, packed[lo // 2 : (hi + 1) // 2].to(torch.int32)).view(-1)
        # NOTE: min + code * scale in one pass, rounded once into out_dtype; the product is exact in fp32, so
        # this equals the reference's multiply, add, then cast.
        torch.addcmul(
            mins[g0:g1].to(torch.float32)[:, None],
            codes[: hi - lo].view(g1 - g0, group_size),
            scales[g0:g1].to(torch.float32)[:, None],
            out=out[lo:hi].view(g1 - g0, group_size),
        )
    return out
