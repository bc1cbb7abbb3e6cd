"""What every offline-throughput runner shares: arguments, timing protocol, RSS sampling, the result line.

Runners are scripts in this folder, each run by `benchmarks/offline_throughput.py` in its own subprocess with its
own venv (thunder's, `bench-venvs/vllm`, `bench-venvs/hf`), so this module uses the standard library only.
A runner supplies one function, `generate(prompts, max_tokens) -> list[list[int]]` (greedy, EOS ignored,
exactly `max_tokens` new tokens per prompt), and calls `run(...)`. The protocol, identical for every system:

1. load (timed: `load_s`), then one warm-up call (1 prompt, 4 tokens);
2. single request, the workload's first prompt: TTFT = median time of a 1-token call; decode tok/s =
   (N - 1) / (median time of an N-token call - TTFT), N = the workload's max_new_tokens; 3 calls each;
3. the whole workload in one call, `--repeats` times; throughput = generated tokens / fastest call.

The result is printed as one line `RESULT {json}` on stdout (libraries print their own noise around it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

RESULT_PREFIX = "RESULT "
Generate = Callable[[list[list[int]], int], list[list[int]]]


def parse_args(description: str, modes: tuple[str, ...] = ()) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--workload", type=Path, required=True, help="workload JSON from benchmarks/workloads.py"
    )
    parser.add_argument("--model-dir", type=Path, required=True, help="HF-style SmolLM2 directory")
    parser.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for the engine")
    parser.add_argument(
        "--repeats", type=int, default=2, help="timed runs of the whole workload (best is kept)"
    )
    parser.add_argument("--outputs", type=Path, help="write the generated token ids (JSON) here")
    if modes:
        parser.add_argument("--mode", choices=modes, default=modes[0])
    return parser.parse_args()


def load_workload(path: Path) -> tuple[list[list[int]], int]:
    raw = json.loads(path.read_text())
    return [list(p) for p in raw["prompt_token_ids"]], int(raw["max_new_tokens"])


class TreeRssSampler:
    """Peak resident memory of this process plus all its descendants (vLLM runs its engine in a child)."""

    def __init__(self, interval_s: float = 0.1) -> None:
        self.peak_bytes = 0
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> TreeRssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._sample()

    def _sample(self) -> None:
        self.peak_bytes = max(self.peak_bytes, sum(self._rss(pid) for pid in self._tree(os.getpid())))

    def _rss(self, pid: int) -> int:
        try:
            return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * self._page
        except (OSError, IndexError, ValueError):
            return 0  # NOTE: a process may exit between listing and reading

    @staticmethod
    def _tree(root: int) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
        tree, todo = [], [root]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo.extend(children.get(pid, []))
        return tree


def _timed(generate: Generate, prompts: list[list[int]], max_tokens: int) -> tuple[float, list[list[int]]]:
    start = time.perf_counter()
    outputs = generate(prompts, max_tokens)
    return time.perf_counter() - start, outputs


def run(
    *,
    system: str,
    args: argparse.Namespace,
    load: Callable[[], Generate],
    versions: dict[str, str],
    extra: dict[str, object] | None = None,
) -> None:
    """Load, warm up, measure single-request latency and batch throughput; print the RESULT line."""
    prompts, max_new_tokens = load_workload(args.workload)
    with TreeRssSampler() as rss:
        start = time.perf_counter()
        generate = load()
        load_s = time.perf_counter() - start
        generate(prompts[:1], 4)
        ttft_s = statistics.median(_timed(generate, prompts[:1], 1)[0] for _ in range(3))
        full_s = statistics.median(_timed(generate, prompts[:1], max_new_tokens)[0] for _ in range(3))
        batch_s: list[float] = []
        for _ in range(args.repeats):
            seconds, outputs = _timed(generate, prompts, max_new_tokens)
            batch_s.append(seconds)
    generated = sum(len(o) for o in outputs)
    expected = len(prompts) * max_new_tokens
    if generated != expected:
        print(f"[{system}] warning: generated {generated} tokens, expected {expected}", file=sys.stderr)
    if args.outputs:
        args.outputs.write_text(json.dumps(outputs))
    result = {
        "system": system,
        "dtype": args.dtype,
        "threads": args.threads,
        "num_requests": len(prompts),
        "prompt_tokens": sum(len(p) for p in prompts),
        "max_new_tokens": max_new_tokens,
        "generated_tokens": generated,
        "seconds": min(batch_s),
        "all_seconds": batch_s,
        "tok_s": generated / min(batch_s),
        "load_s": load_s,
        "peak_rss_mib": rss.peak_bytes / 2**20,
        "ttft_ms": ttft_s * 1e3,
        # NOTE: noise can make the N-token call no slower than the 1-token one; report no figure then.
        "decode_tok_s": (max_new_tokens - 1) / (full_s - ttft_s) if full_s > ttft_s else None,
        "versions": versions,
        **(extra or {}),
    }
    sys.stdout.flush()
    print(RESULT_PREFIX + json.dumps(result), flush=True)
