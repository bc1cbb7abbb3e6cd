"""PrepackedLinear: the oneDNN pre-packed path gives F.linear's results for any batch size."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kernels_ext import PrepackedLinear, prepack_supported


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows", [1, 7, 64, 300])
def test_prepacked_linear_matches_f_linear(dtype: torch.dtype, rows: int) -> None:
    gen = torch.Generator().manual_seed(rows)
    w = torch.randn(96, 64, generator=gen).to(dtype)
    b = torch.randn(96, generator=gen).to(dtype)
    x = torch.randn(rows, 64, generator=gen).to(dtype)
    for bias in (b, None):
        got = PrepackedLinear(w, bias)(x)
        torch.testing.assert_close(got, F.linear(x, w, bias), atol=1e-2, rtol=1e-2)


def test_prepacking_is_only_claimed_for_cpu_bfloat16_and_float32() -> None:
    assert not prepack_supported(torch.float16, torch.device("cpu"))
    assert not prepack_supported(torch.bfloat16, torch.device("meta"))
    assert prepack_supported(torch.float32, torch.device("cpu")) == torch.backends.mkldnn.is_available()
