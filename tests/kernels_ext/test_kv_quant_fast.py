"""The fast int4 path is bit-identical to the reference: codes, scales, mins and dequantized values."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels_ext import kv_quant_fast, pack_kv, unpack_kv
from kernels_ext.kv_quant import PackedKV


def assert_same_packed(a: PackedKV, b: PackedKV) -> None:
    assert torch.equal(a.payload, b.payload)
    assert torch.equal(a.scales, b.scales)
    assert torch.equal(a.mins, b.mins)


@st.composite
def kv_cases(draw: st.DrawFn) -> tuple[torch.Tensor, int]:
    layers = draw(st.integers(1, 3))
    tokens = draw(st.integers(0, 6))
    heads = draw(st.integers(1, 4))
    head_dim = draw(st.sampled_from([1, 2, 3, 5, 8, 16]))
    row = heads * head_dim
    group_size = draw(st.sampled_from([d for d in range(1, row + 1) if row % d == 0]))
    count = layers * 2 * tokens * row
    magnitude = draw(st.sampled_from([1e-3, 1.0, 300.0]))
    values = draw(
        st.lists(st.floats(-1.0, 1.0, width=32), min_size=count, max_size=count)
        | st.just([0.5] * count)  # constant tensor: every group has scale 0 or a tiny one
    )
    dtype = draw(st.sampled_from([torch.float32, torch.float16, torch.bfloat16]))
    kv = (torch.tensor(values, dtype=torch.float32) * magnitude).reshape(layers, 2, tokens, heads, head_dim)
    return kv.to(dtype), group_size


@settings(max_examples=150, deadline=None)
@given(case=kv_cases(), chunk=st.sampled_from([2, 6, 64, 1 << 20]))
def test_fast_equals_reference_bit_for_bit(case: tuple[torch.Tensor, int], chunk: int) -> None:
    kv, group_size = case
    # NOTE: tiny chunks force many chunk boundaries, odd group sizes and odd tails through the fast path.
    original = kv_quant_fast.CHUNK_ELEMENTS
    kv_quant_fast.CHUNK_ELEMENTS = chunk
    try:
        fast = pack_kv(kv, dtype="int4", group_size=group_size, impl="fast")
        ref = pack_kv(kv, dtype="int4", group_size=group_size, impl="reference")
        assert_same_packed(fast, ref)
        for out_dtype in (torch.float32, torch.bfloat16):
            a = unpack_kv(ref, out_dtype=out_dtype, impl="fast")
            b = unpack_kv(ref, out_dtype=out_dtype, impl="reference")
            assert torch.equal(a, b)
    finally:
        kv_quant_fast.CHUNK_ELEMENTS = original
    if kv.numel():
        err = (kv.float() - unpack_kv(ref, out_dtype=torch.float32)).abs().reshape(-1, group_size)
        half = ref.scales.float()[:, None] / 2
        assert bool((err <= half + 1e-6 * (kv.float().abs().reshape(-1, group_size) + 1)).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fast_equals_reference_on_a_multi_chunk_smollm2_sized_kv(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(3)
    kv = (torch.randn(30, 2, 200, 3, 64, generator=gen) * 4).to(dtype)  # 2.3 M values: several chunks
    fast = pack_kv(kv, dtype="int4", impl="fast")
    ref = pack_kv(kv, dtype="int4", impl="reference")
    assert_same_packed(fast, ref)
    assert torch.equal(unpack_kv(fast, impl="fast"), unpack_kv(fast, impl="reference"))


@pytest.mark.gpu
def test_cuda_fast_path_equals_cpu_reference() -> None:
    gen = torch.Generator().manual_seed(5)
    kv = (torch.randn(4, 2, 77, 8, 128, generator=gen) * 3).to(torch.bfloat16)
    ref = pack_kv(kv, dtype="int4", impl="reference")
    on_gpu = pack_kv(kv.cuda(), dtype="int4", impl="fast")
    assert on_gpu.payload.is_cuda
    assert torch.equal(on_gpu.payload.cpu(), ref.payload)
    assert torch.equal(on_gpu.scales.cpu(), ref.scales) and torch.equal(on_gpu.mins.cpu(), ref.mins)
    out = unpack_kv(ref, device="cuda")
    assert out.is_cuda and torch.equal(out.cpu(), unpack_kv(ref, impl="reference"))
