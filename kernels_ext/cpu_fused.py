"""Fused CPU kernels (RMSNorm with residual add, SiLU-and-mul, RoPE, KV append, paged attention) via ctypes.

The C source (`kernels_ext.cpu_kernels_src`) is compiled once per machine with the system C compiler
(``cc -O3 -march=native -fopenmp``) into ``$THUNDER_CACHE_DIR/kernels/<hash>/`` (default
``~/.cache/thunder``) and loaded with ctypes; no torch headers, so a build takes about a second. Where no
compiler works, or ``THUNDER_FUSED_KERNELS=0``, `available()` is False and callers keep their torch path.

All functions take CPU tensors of one dtype, float32 or bfloat16 (`supported`), with unit stride in the last
dimension; they compute in float32 and use ``torch.get_num_threads()`` OpenMP threads.

NOTE: the library links ``libgomp.so.1``; loaded into a process where torch already loaded its bundled
``libgomp.so.1`` the dynamic linker reuses that one, so torch and these kernels share one OpenMP pool.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch

from kernels_ext.cpu_kernels_src import SOURCE

__all__ = [
    "add_",
    "add_rms_norm",
    "argmax_rows",
    "available",
    "paged_attention",
    "rope_",
    "silu_mul",
    "supported",
    "write_kv",
]

_FLAGS = ("-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-fPIC", "-shared", "-std=gnu11")
_P, _L, _F, _I = ctypes.c_void_p, ctypes.c_long, ctypes.c_float, ctypes.c_int
_SIGNATURES = {
    "th_add_rms_norm": (_P, _P, _P, _P, _L, _L, _F, _I, _I),
    "th_silu_mul": (_P, _P, _L, _L, _I, _I),
    "th_add_": (_P, _P, _L, _I, _I),
    "th_argmax_rows": (_P, _L, _L, _L, _P, _I),
    "th_rope": (_P, _L, _L, _L, _L, _P, _P, _P, _I, _I),
    "th_write_kv": (_P, _P, _L, _P, _L, _P, _L, _L, _L, _I),
    "th_paged_attention": (_P, _L, _P, _L, _P, _P, _P, _P, _P, _L, _L, _L, _L, _L, _F, _I, _I),
}


def _cache_root() -> Path:
    return Path(os.environ.get("THUNDER_CACHE_DIR") or Path.home() / ".cache" / "thunder") / "kernels"


def _cpu_key() -> str:
    try:
        flags = next(
            line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")
        )
    except (OSError, StopIteration):
        flags = platform.processor()
    return flags


def _build() -> Path:
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler (cc/gcc) on PATH")
    key = hashlib.sha256("\0".join((SOURCE, compiler, *_FLAGS, _cpu_key())).encode()).hexdigest()[:16]
    target = _cache_root() / key / "libthunder_cpu.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        src = Path(tmp) / "thunder_cpu.c"
        src.write_text(SOURCE)
        out = Path(tmp) / "lib.so"
        proc = subprocess.run(
            [compiler, *_FLAGS, str(src), "-o", str(out), "-lm"], capture_output=True, text=True, timeout=300
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{compiler} failed: {proc.stderr[-2000:]}")
        os.replace(out, target)  # NOTE: atomic, so concurrent builders never load a half-written file
    return target


@functools.cache
def _lib() -> ctypes.CDLL | None:
    if os.environ.get("THUNDER_FUSED_KERNELS", "1") == "0":
        return None
    try:
        lib = ctypes.CDLL(str(_build()))
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        warnings.warn(f"thunder fused CPU kernels unavailable, using torch ops: {exc}", stacklevel=2)
        return None
    for name, args in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, None
    return lib


def available() -> bool:
    """True when the fused kernels are built and loaded (False with ``THUNDER_FUSED_KERNELS=0``)."""
    return _lib() is not None


def supported(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether tensors of ``dtype`` on ``device`` can use these kernels (and they are `available`)."""
    return device.type == "cpu" and dtype in (torch.float32, torch.bfloat16) and available()


def _lib_or_raise() -> ctypes.CDLL:
    lib = _lib()
    if lib is None:
        raise RuntimeError("fused CPU kernels are not available; check kernels_ext.cpu_fused.available()")
    return lib


def _bf(t: torch.Tensor) -> int:
    if t.dtype not in (torch.float32, torch.bfloat16) or t.device.type != "cpu":
        raise ValueError(f"tensor is {t.dtype} on {t.device}; the fused kernels take CPU float32/bfloat16")
    return int(t.dtype == torch.bfloat16)


def add_rms_norm(
    residual: torch.Tensor, delta: torch.Tensor | None, weight: torch.Tensor, eps: float
) -> torch.Tensor:
    """``residual += delta`` in place (skipped when ``delta`` is None), then ``rms_norm(residual) * weight``.

    ``residual``/``delta`` ``[T, n]`` contiguous, ``weight [n]``; returns a new ``[T, n]`` tensor.
    """
    rows, n = residual.shape
    out = torch.empty_like(residual)
    _lib_or_raise().th_add_rms_norm(
        residual.data_ptr(), None if delta is None else delta.data_ptr(), out.data_ptr(), weight.data_ptr(),
        rows, n, eps, _bf(residual), torch.get_num_threads(),
    )  # fmt: skip
    return out


def add_(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``x += y`` in place for contiguous tensors of one shape and dtype (serial at decode sizes, unlike
    ``torch.add_``, which opens a 2-thread region from 32k elements); returns ``x``."""
    if x.shape != y.shape or x.dtype != y.dtype or not (x.is_contiguous() and y.is_contiguous()):
        raise ValueError("add_ needs contiguous x and y of one shape and dtype")
    _lib_or_raise().th_add_(x.data_ptr(), y.data_ptr(), x.numel(), _bf(x), torch.get_num_threads())
    return x


def argmax_rows(x: torch.Tensor) -> torch.Tensor:
    """Index of the first maximum of each row of ``x [N, V]`` (unit stride in V) as int64 ``[N]``; a NaN
    counts as the maximum, as in ``torch.max``. Serial (no OpenMP region): greedy sampling of 64 x 49152
    float32 logits takes ~0.4 ms on one Zen 5 core, ``torch.max(dim=-1)`` ~1.6 ms."""
    if x.dim() != 2 or x.stride(1) != 1:
        raise ValueError(f"argmax_rows needs a 2-D tensor with unit-stride rows; got shape {tuple(x.shape)}")
    out = torch.empty(x.shape[0], dtype=torch.int64)
    _lib_or_raise().th_argmax_rows(x.data_ptr(), x.shape[0], x.shape[1], x.stride(0), out.data_ptr(), _bf(x))
    return out


def silu_mul(gate_up: torch.Tensor) -> torch.Tensor:
    """``silu(gate_up[:, :I]) * gate_up[:, I:]`` for contiguous ``gate_up [T, 2I]``; returns ``[T, I]``."""
    rows, two_i = gate_up.shape
    out = gate_up.new_empty(rows, two_i // 2)
    _lib_or_raise().th_silu_mul(
        gate_up.data_ptr(), out.data_ptr(), rows, two_i // 2, _bf(gate_up), torch.get_num_threads()
    )
    return out


def rope_(
    x: torch.Tensor, num_heads: int, cos: torch.Tensor, sin_signed: torch.Tensor, positions: torch.Tensor
) -> None:
    """Rotate heads ``[0, num_heads)`` of ``x [T, >= num_heads * D]`` in place (rotate-half form).

    ``cos``/``sin_signed`` ``[max_pos, D]`` tables in ``x``'s dtype (see `RotaryEmbedding`); ``positions
    [T]`` int64. ``x`` rows may be strided (``x.stride(1) == 1``).
    """
    if x.stride(1) != 1 or positions.dtype != torch.int64:
        raise ValueError("rope_ needs unit-stride rows and int64 positions")
    d = cos.shape[-1]
    _lib_or_raise().th_rope(
        x.data_ptr(), x.shape[0], x.stride(0), num_heads, d, cos.data_ptr(), sin_signed.data_ptr(),
        positions.data_ptr(), _bf(x), torch.get_num_threads(),
    )  # fmt: skip


def write_kv(
    cache: torch.Tensor, key: torch.Tensor, value: torch.Tensor, k_rows: torch.Tensor, page_size: int
) -> None:
    """Copy ``key/value [T, Hkv, D]`` (token rows may be strided) to K rows ``k_rows [T]`` (int64) of one
    layer's ``cache [P, 2, S, Hkv, D]`` viewed as ``[-1, Hkv * D]``; V rows are ``k_rows + page_size``."""
    width = key.shape[1] * key.shape[2]
    for t in (key, value):
        if t.dtype != cache.dtype or t.stride(2) != 1 or t.stride(1) != t.shape[2]:
            raise ValueError("write_kv needs key/value in the cache dtype with contiguous [Hkv, D] rows")
    _lib_or_raise().th_write_kv(
        cache.data_ptr(), key.data_ptr(), key.stride(0), value.data_ptr(), value.stride(0),
        k_rows.data_ptr(), key.shape[0], width, page_size, _bf(cache),
    )  # fmt: skip


def paged_attention(
    q: torch.Tensor,
    cache: torch.Tensor,
    qo_indptr: torch.Tensor,
    kv_indptr: torch.Tensor,
    kv_indices: torch.Tensor,
    kv_lens: torch.Tensor,
    sm_scale: float,
) -> torch.Tensor:
    """Causal (bottom-right aligned) GQA attention of ``q [nnz, Hq, D]`` over one layer's paged
    ``cache [P, 2, S, Hkv, D]`` (FlashInfer NHD); returns ``[nnz, Hq, D]`` in ``q``'s dtype.

    ``qo_indptr``/``kv_indptr`` ``[B+1]``, ``kv_indices``, ``kv_lens [B]``: contiguous int32 (``kv_lens``
    include the step's new tokens, already appended). ``q`` token rows may be strided.
    """
    nnz, hq, d = q.shape
    if q.dtype != cache.dtype:
        raise ValueError(f"q is {q.dtype} but the cache is {cache.dtype}")
    if q.stride(2) != 1 or q.stride(1) != d:
        q = q.contiguous()
    out = q.new_empty(nnz, hq, d)
    _lib_or_raise().th_paged_attention(
        q.data_ptr(), q.stride(0), out.data_ptr(), hq * d, cache.data_ptr(), qo_indptr.data_ptr(),
        kv_indptr.data_ptr(), kv_indices.data_ptr(), kv_lens.data_ptr(), kv_lens.shape[0], hq,
        cache.shape[3], d, cache.shape[2], sm_scale, _bf(q), torch.get_num_threads(),
    )  # fmt: skip
    return out
