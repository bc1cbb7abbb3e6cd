"""What the disaggregated runtime costs and buys on this machine, against the bare engine IN THE SAME RUN.

Same requests (real English prompts of 16-64 tokens, 32 output tokens each, greedy, EOS ignored) through:

- ``engine``: one `LLMEngine` in this process, `generate` (one continuous batch), with 1 and with 2 torch
  threads — the faster of the two is the baseline (on shared, busy cores 2 threads can lose to 1);
- ``disaggregated``: `AsyncLLM` = 1 prefill + 1 decode device process (1 torch thread each), int4 KV handoff;
- ``colocated``: `AsyncLLM` with 2 colocated device processes (1 thread each), arrivals split 50/50.

Prints output tok/s per system and its ratio to the engine, mean/p50 TTFT and TPOT as the runtime's client
sees them, and the KV bytes that crossed the wire. Run: ``.venv/bin/python benchmarks/runtime_overhead.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workloads import Workload, build_offline_workload  # noqa: E402

from thunder.engine import EngineConfig, LLMEngine, SamplingParams  # noqa: E402
from thunder.llm import AsyncLLM  # noqa: E402

DTYPE = "float32"


def run_engine(workload: Workload, threads: int) -> dict[str, float]:
    engine = LLMEngine(EngineConfig(dtype=DTYPE, num_threads=threads, kv_cache_gib=0.5))
    params = SamplingParams(max_tokens=workload.max_new_tokens, temperature=0, ignore_eos=True)
    engine.generate([list(workload.prompt_token_ids[0])], SamplingParams(max_tokens=2))  # warm-up
    start = time.perf_counter()
    outs = engine.generate([list(p) for p in workload.prompt_token_ids], params)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "output_tokens": sum(len(o.token_ids) for o in outs)}


async def run_runtime(workload: Workload, mode: str) -> dict[str, float]:
    llm = await AsyncLLM.start(mode=mode, dtype=DTYPE, profile=False, threads_per_device=1, kv_cache_gib=0.5)
    try:
        ttft: list[float] = []
        tpot: list[float] = []

        async def one(ids: tuple[int, ...]) -> int:
            sent = time.perf_counter()
            first = last = None
            n = 0
            async for delta in llm.stream(list(ids), max_tokens=workload.max_new_tokens, temperature=0,
                                          ignore_eos=True):
                now = time.perf_counter()
                if delta.token_ids and first is None:
                    first = now
                last, n = now, delta.num_output_tokens
            assert first is not None and last is not None
            ttft.append(first - sent)
            if n > 1:
                tpot.append((last - first) / (n - 1))
            return n

        start = time.perf_counter()
        counts = await asyncio.gather(*(one(p) for p in workload.prompt_token_ids))
        seconds = time.perf_counter() - start
        live = llm.runtime.live
        return {"seconds": seconds, "output_tokens": sum(counts), "ttft_mean": statistics.mean(ttft),
                "ttft_p50": statistics.median(ttft), "tpot_mean": statistics.mean(tpot),
                "tpot_p50": statistics.median(tpot), "kv_wire_bytes": live.kv_wire_bytes,
                "kv_fp16_bytes": live.kv_fp16_bytes, "handoffs": live.handoffs}
    finally:
        await llm.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--modes", default="disaggregated,colocated")
    args = parser.parse_args()
    from thunder.models import Tokenizer, load_model_dir

    tok = Tokenizer(load_model_dir())
    workload = build_offline_workload(lambda t: tok.encode(t, add_special_tokens=False), tok.decode,
                                      num_requests=args.requests, max_new_tokens=args.max_new_tokens)
    print(f"{workload.num_requests} requests, {workload.num_prompt_tokens} prompt tokens, "
          f"{workload.max_new_tokens} output tokens each, {DTYPE}, 2 cores")
    results = {f"engine {n} thread{'s' if n > 1 else ''}": run_engine(workload, threads=n) for n in (1, 2)}
    for mode in args.modes.split(","):
        results[mode] = asyncio.run(run_runtime(workload, mode))
    base = max(r["output_tokens"] / r["seconds"] for name, r in results.items() if name.startswith("engine"))
    print(f"ratio = output tok/s / best engine baseline ({base:.1f} tok/s)")
    print(f"{'system':<20}{'out tok/s':>10}{'ratio':>8}{'TTFT mean':>11}{'TTFT p50':>10}{'TPOT mean':>11}"
          f"{'TPOT p50':>10}{'KV wire':>11}{'vs fp16':>9}")
    for name, r in results.items():
        rate = r["output_tokens"] / r["seconds"]
        row = f"{name:<20}{rate:>10.1f}{rate / base:>7.2f}x"
        if "ttft_mean" in r:
            row += (f"{r['ttft_mean'] * 1e3:>9.0f}ms{r['ttft_p50'] * 1e3:>8.0f}ms{r['tpot_mean'] * 1e3:>9.0f}ms"
                    f"{r['tpot_p50'] * 1e3:>8.0f}ms")
            if r["kv_wire_bytes"]:
                row += f"{r['kv_wire_bytes'] / 1e6:>9.2f}MB{r['kv_fp16_bytes'] / r['kv_wire_bytes']:>8.2f}x"
        print(row)


if __name__ == "__main__":
    main()
