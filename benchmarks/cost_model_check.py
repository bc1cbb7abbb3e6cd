"""Is the cost model honest? Profile the real engine, calibrate, and predict held-out step times.

Profiles SmolLM2 (the embedded model) with `thunder.engine.LLMEngine` on this machine's CPU: prefill steps over
batch sizes x prompt lengths and decode steps over batch sizes x context lengths (median of repeats). Every
other point calibrates `CostModel` (`planner.calibrate`: effective FLOP/s, memory bandwidth, per-step overhead
and the bandwidth of attention's KV reads (CPU attention gathers each layer's KV pages: time grows with
batch × context beyond the roofline) of device type "cpu"); the rest are held out and predicted with the very code the planner and the simulator use
(`CostModel.prefill_time` / `decode_step_time`). Target: every held-out point within 20 %.

    .venv/bin/python benchmarks/cost_model_check.py [--threads N] [--repeats R]
"""

from __future__ import annotations

import argparse
import statistics
import time
from itertools import count

import numpy as np
from rich.console import Console
from rich.table import Table

from planner import CostModel, ModelSpec, ProfileSample
from planner.calibrate import predict
from thunder.engine import EngineConfig, LLMEngine, SamplingParams

PREFILL_GRID = [(b, s) for b in (1, 2, 4) for s in (32, 128, 256)]
DECODE_GRID = [(b, s) for b in (1, 4, 16) for s in (32, 128, 256)]
_ids = count()


def _prompt(rng: np.random.Generator, length: int, vocab: int) -> list[int]:
    return rng.integers(100, vocab - 1, size=length).tolist()


def time_prefill(engine: LLMEngine, batch: int, length: int, rng: np.random.Generator) -> float:
    """Seconds of the one engine step that prefills `batch` fresh prompts of `length` tokens."""
    params = SamplingParams(max_tokens=1, temperature=0.0, ignore_eos=True)
    vocab = engine.model_config.vocab_size
    for _ in range(batch):
        engine.add_request(f"p{next(_ids)}", _prompt(rng, length, vocab), params)
    t0 = time.perf_counter()
    engine.step()
    elapsed = time.perf_counter() - t0
    while engine.has_unfinished():
        engine.step()
    return elapsed


def time_decode(engine: LLMEngine, batch: int, context: int, rng: np.random.Generator, steps: int = 5) -> float:
    """Median seconds of a decode step over `batch` sequences holding about `context` tokens each."""
    params = SamplingParams(max_tokens=steps + 2, temperature=0.0, ignore_eos=True)
    vocab = engine.model_config.vocab_size
    for _ in range(batch):
        engine.add_request(f"d{next(_ids)}", _prompt(rng, context, vocab), params)
    while engine.stats().running < batch or _prefilling(engine):
        engine.step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        engine.step()
        times.append(time.perf_counter() - t0)
    while engine.has_unfinished():
        engine.step()
    return statistics.median(times)


def _prefilling(engine: LLMEngine) -> bool:
    return any(s.num_computed_tokens < s.num_prompt_tokens for s in engine.scheduler.running)


def profile(engine: LLMEngine, repeats: int, seed: int, console: Console) -> list[ProfileSample]:
    rng = np.random.default_rng(seed)
    time_prefill(engine, 1, 64, rng)  # warm-up (allocator, kernels)
    time_decode(engine, 2, 64, rng)
    samples = []
    for b, s in PREFILL_GRID:
        t = statistics.median(time_prefill(engine, b, s, rng) for _ in range(repeats))
        samples.append(ProfileSample(phase="prefill", gpu_type="cpu", batch_size=b, seq_len=s, seconds=t))
        console.print(f"prefill batch={b} prompt={s}: {t * 1e3:.1f} ms")
    for b, s in DECODE_GRID:  # NOTE: one set-up prefill per point; the median is over `repeats + 2` steps
        t = time_decode(engine, b, s, rng, steps=repeats + 2)
        samples.append(ProfileSample(phase="decode", gpu_type="cpu", batch_size=b, seq_len=s, seconds=t))
        console.print(f"decode batch={b} context={s}: {t * 1e3:.1f} ms")
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    console = Console(width=160)
    engine = LLMEngine(EngineConfig(num_threads=args.threads, enable_prefix_caching=False,
                                    max_num_batched_tokens=4096, max_num_seqs=64, kv_cache_gib=1.0))
    spec = ModelSpec.from_hf_config(engine.model_dir, name="smollm2-135m")
    t0 = time.perf_counter()
    samples = profile(engine, args.repeats, args.seed, console)
    profile_s = time.perf_counter() - t0
    train = samples[0::2]
    held_out = samples[1::2]
    base = CostModel.from_catalog(spec)
    fitted = base.calibrate(train)
    consts = fitted.constants("cpu")
    table = Table(title=f"SmolLM2 on this CPU: calibrated on {len(train)} points, {len(held_out)} held out "
                        f"(profiling {profile_s:.0f}s)")
    for col in ("phase", "batch", "tokens", "measured ms", "predicted ms", "error"):
        table.add_column(col, justify="right")
    errors = []
    for s in held_out:
        pred = predict(fitted, s)
        err = (pred - s.seconds) / s.seconds
        errors.append(abs(err))
        table.add_row(s.phase, str(s.batch_size), str(s.seq_len), f"{s.seconds * 1e3:.1f}", f"{pred * 1e3:.1f}",
                      f"{err:+.1%}")
    console.print(table)
    train_err = [abs(predict(fitted, s) - s.seconds) / s.seconds for s in train]
    console.print(f"fitted cpu constants: {consts.flops / 1e9:.1f} GFLOP/s, {consts.mem_bw / 1e9:.1f} GB/s, "
                  f"overhead {consts.overhead_s * 1e3:.2f} ms/step, attention KV reads {consts.kv_read_bw / 1e9:.2f} GB/s")
    within = sum(e <= 0.2 for e in errors)
    console.print(f"held-out |error|: median {statistics.median(errors):.1%}, max {max(errors):.1%}; "
                  f"{within}/{len(errors)} within 20% (train median {statistics.median(train_err):.1%})")


if __name__ == "__main__":
    main()
