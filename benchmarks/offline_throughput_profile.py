"""Where thunder's offline-throughput time goes: wall time per engine component on the 64x64 workload.

    .venv/bin/python benchmarks/offline_throughput_profile.py --dtype bfloat16

The fused C kernels are ctypes calls that torch.profiler does not see, so this wraps the components with
wall-clock timers instead (linears, lm_head, each fused kernel, attention plan, sampler, scheduler) and runs
the same workload as `benchmarks/offline_throughput.py` (2 threads, 2 GiB KV, prefix caching off).
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import thunder  # noqa: E402, F401  (OpenMP defaults before torch loads)
from kernels_ext import cpu_fused, linear  # noqa: E402
from thunder.engine import EngineConfig, LLMEngine, quickbench  # noqa: E402

TOTAL: dict[str, float] = collections.defaultdict(float)
CALLS: dict[str, int] = collections.defaultdict(int)


def timed(fn: Callable[..., Any], key: str | Callable[..., str]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        name = key(*args) if callable(key) else key
        TOTAL[name] += time.perf_counter() - start
        CALLS[name] += 1
        return out

    return wrapper


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    engine = LLMEngine(
        EngineConfig(
            dtype=args.dtype, num_threads=args.threads, enable_prefix_caching=False, kv_cache_gib=2.0
        )
    )
    prompts = quickbench._prompts(engine, 64, seed=0)
    quickbench.run_offline(engine, prompts[:8], 4)  # warm-up
    for name in ("add_rms_norm", "silu_mul", "rope_", "write_kv", "paged_attention"):
        setattr(cpu_fused, name, timed(getattr(cpu_fused, name), name))
    call = linear.PrepackedLinear.__call__
    linear.PrepackedLinear.__call__ = timed(  # type: ignore[method-assign]
        call, lambda self, x: "lm_head" if self.weight.shape[0] == engine.vocab_size else "linear"
    )
    runner = engine.runner
    runner.forward = timed(runner.forward, "runner.forward (all layers)")  # type: ignore[method-assign]
    runner.attn.plan = timed(runner.attn.plan, "attention plan")  # type: ignore[method-assign]
    engine.sampler = timed(engine.sampler, "sampler")  # type: ignore[assignment]
    engine.scheduler.schedule = timed(engine.scheduler.schedule, "scheduler")  # type: ignore[method-assign]
    result = quickbench.run_offline(engine, prompts, 64)
    print(
        f"{args.dtype}: {result['tok_per_s']:.0f} tok/s, {result['seconds']:.2f} s, {result['steps']} steps"
    )
    for name in sorted(TOTAL, key=lambda k: -TOTAL[k]):
        ms = TOTAL[name] * 1e3
        print(f"  {name:28s} {ms:8.1f} ms {CALLS[name]:6d} calls {ms * 1e3 / CALLS[name]:8.1f} us/call")


if __name__ == "__main__":
    main()
