"""Self-check of offline throughput: ``python -m thunder.engine.quickbench [--dtype ...] [--profile]``.

Runs the issue's offline workload (64 prompts of 16-64 tokens of English text, 64 new tokens each, greedy,
EOS ignored) through `LLMEngine.generate` and prints generated tokens per second. Run it from the repo root
so the shared workload (`benchmarks/workloads.py`) is importable; the peers comparison lives in
`benchmarks/offline_throughput.py`.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from thunder.engine.config import EngineConfig, SamplingParams
from thunder.engine.llm_engine import LLMEngine

__all__ = ["main", "run_offline"]


def _prompts(engine: LLMEngine, num_requests: int, seed: int) -> list[list[int]]:
    try:
        from benchmarks.workloads import build_offline_workload
    except ImportError as exc:
        raise SystemExit(
            "run from the repository root: benchmarks/workloads.py provides the prompts"
        ) from exc
    tok = engine.tokenizer
    workload = build_offline_workload(
        lambda s: tok.encode(s, add_special_tokens=False), tok.decode, num_requests=num_requests, seed=seed
    )
    return [list(p) for p in workload.prompt_token_ids]


def run_offline(engine: LLMEngine, prompts: list[list[int]], max_tokens: int) -> dict[str, float]:
    """Generate for every prompt at once; returns wall time and generated tokens per second."""
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
    steps0 = engine.stats().steps
    t0 = time.perf_counter()
    done = engine.generate(prompts, params)
    elapsed = time.perf_counter() - t0
    generated = sum(len(c.token_ids) for c in done)
    return {
        "seconds": elapsed,
        "generated_tokens": generated,
        "prompt_tokens": sum(len(p) for p in prompts),
        "tok_per_s": generated / elapsed,
        "steps": engine.stats().steps - steps0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"])
    ap.add_argument("--num-requests", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--max-num-batched-tokens", type=int, default=2048)
    ap.add_argument("--repeat", type=int, default=2, help="timed runs after one warm-up run")
    ap.add_argument("--profile", action="store_true", help="print a torch.profiler table of one run")
    args = ap.parse_args()
    engine = LLMEngine(
        EngineConfig(
            dtype=args.dtype,
            num_threads=args.threads,
            max_num_batched_tokens=args.max_num_batched_tokens,
            enable_prefix_caching=False,
        )
    )
    prompts = _prompts(engine, args.num_requests, seed=0)
    run_offline(engine, prompts[:8], 4)  # warm-up
    results = [run_offline(engine, prompts, args.max_tokens) for _ in range(args.repeat)]
    best = max(results, key=lambda r: r["tok_per_s"])
    print(json.dumps({"dtype": str(engine.dtype), "threads": torch.get_num_threads(), **best}))
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run_offline(engine, prompts, args.max_tokens)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


if __name__ == "__main__":
    main()
