"""Online serving: `thunder run` (disaggregated and colocated) against vLLM's OpenAI server, in the same run.

    .venv/bin/python benchmarks/serving.py            # 64 and 256 requests at rate inf, 2 and 4 req/s
    .venv/bin/python benchmarks/serving.py --quick    # 64 requests at rate inf and 2 req/s
    .venv/bin/python benchmarks/serving.py --systems thunder-disaggregated,vllm --dtype float32
    .venv/bin/python benchmarks/serving.py --systems thunder-disaggregated,thunder-disaggregated-even  # CPU policy A/B

Each system is started, waited on (/health), warmed up, loaded scenario after scenario, and stopped, in turn, on
the same cores, SmolLM2-135M-Instruct weights (thunder's converted HF directory, which vLLM also loads) and dtype.
One neutral client drives them all: `vllm bench serve` from the vLLM venv (benchmarks/serving_client.py) with
random prompts of 16-64 tokens, exactly 64 output tokens (EOS ignored), greedy, Poisson arrivals, seed 0.
Prints request/s, output tok/s, TTFT and TPOT p50/p99 per system and thunder's ratios to vLLM per scenario,
checks the targets of issue 6 point 8, and writes benchmarks/results/serving.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import shlex
import signal
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # NOTE: run as a script; the `benchmarks.*` helpers live beside it

from benchmarks.offline_throughput import _cpu_model, default_model_dir, loadavg  # noqa: E402
from benchmarks.serving_client import ClientError, LoadShape, Scenario, run_load  # noqa: E402
from benchmarks.serving_servers import (  # noqa: E402
    ServerError,
    ServerSpec,
    free_port,
    get_json,
    running_server,
    thunder_spec,
    vllm_spec,
)

SYSTEMS = ("thunder-disaggregated", "thunder-colocated", "vllm")
VARIANTS = {"thunder-disaggregated-even": ("--cpu-policy", "even")}
"""Extra systems (not run by default): thunder with other options, for a same-run before/after."""
PEER = "vllm"
SERVED_NAME = "smollm2-135m-instruct"
console = Console(width=None if sys.stdout.isatty() else 150)  # NOTE: piped output keeps the table whole


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help=f"comma list of {', '.join((*SYSTEMS, *VARIANTS))} (the last: thunder run --cpu-policy even)",
    )
    p.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16")
    p.add_argument("--num-prompts", default="64,256", help="comma list of request counts")
    p.add_argument(
        "--rates", default="inf,2,4", help="comma list of request rates (req/s; inf = all at once)"
    )
    p.add_argument("--quick", action="store_true", help="64 requests at rate inf and 2 req/s only")
    p.add_argument(
        "--devices", type=int, default=2, help="thunder CPU workers (the cores are split among them)"
    )
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="vLLM engine threads (all cores)")
    p.add_argument("--thunder-args", default="", help="extra `thunder run` options, e.g. '--kv-cache-gib 2'")
    p.add_argument("--warmup-prompts", type=int, default=16, help="requests sent (at once) before measuring")
    p.add_argument("--model-dir", type=Path, help="HF-style model dir (default: thunder's converted SmolLM2)")
    p.add_argument(
        "--venvs", type=Path, default=HERE.parent / "bench-venvs", help="where setup_peers.sh put them"
    )
    p.add_argument("--logs", type=Path, help="server and client logs (default: a new temporary dir)")
    p.add_argument("--out", type=Path, default=HERE / "results" / "serving.json")
    args = p.parse_args()
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    for name in args.systems:
        if name not in SYSTEMS and name not in VARIANTS:
            p.error(f"--systems: unknown system {name!r}; choose from {', '.join((*SYSTEMS, *VARIANTS))}")
    if args.quick:
        args.num_prompts, args.rates = "64", "inf,2"
    try:
        counts = [int(n) for n in args.num_prompts.split(",")]
        rates = [float(r) for r in args.rates.split(",")]
    except ValueError as exc:
        p.error(f"--num-prompts/--rates: {exc}; e.g. --num-prompts 64,256 --rates inf,2,4")
    args.scenarios = [Scenario(num_prompts=n, request_rate=r) for n in counts for r in rates]
    return args


def make_spec(name: str, args: argparse.Namespace, work: Path) -> ServerSpec:
    if name == PEER:
        return vllm_spec(venvs=args.venvs, model_dir=args.model_dir, served_name=SERVED_NAME, dtype=args.dtype,
                         threads=args.threads, port=free_port(), work_dir=work)  # fmt: skip
    variant = VARIANTS.get(name, ())
    mode = name.removeprefix("thunder-").split("-")[0]
    extra = (*shlex.split(args.thunder_args), *variant)
    spec = thunder_spec(mode=mode, dtype=args.dtype, devices=args.devices, port=free_port(), extra=extra)
    return dataclasses.replace(spec, name=name)


def bench_system(name: str, args: argparse.Namespace, work: Path) -> dict:
    """Start one server, warm it up, run every scenario against it, stop it. Errors end up in the result."""
    outcome: dict = {"system": name, "scenarios": {}}
    client_python = args.venvs / "vllm" / "bin" / "python"
    try:
        spec = make_spec(name, args, work)
        console.print(f"[bold]{name}[/]: starting (log {work / name}.log) ...")
        with running_server(spec, work / f"{name}.log") as startup_s:
            outcome["startup_s"] = startup_s
            model = get_json(spec.base_url + "/v1/models")["data"][0]["id"]
            if name != PEER:
                plan = get_json(spec.base_url + "/v1/plan")
                outcome["phases"] = [g["phase"] for g in plan["groups"]]
            console.print(f"  ready after {startup_s:.0f} s; phases {outcome.get('phases', '-')}; warming up")

            def load(scenario: Scenario, tag: str) -> dict[str, float]:
                return run_load(
                    client_python=client_python, base_url=spec.base_url, model=model,
                    tokenizer_dir=args.model_dir, scenario=scenario, shape=args.shape, work_dir=work,
                    name=f"{name}-{tag}", timeout_s=1800.0,
                )  # fmt: skip

            load(Scenario(num_prompts=args.warmup_prompts, request_rate=math.inf), "warmup")
            for scenario in args.scenarios:
                before = loadavg()
                metrics = load(scenario, scenario.key.replace("@", "-at-"))
                metrics.update(loadavg_before=before, loadavg_after=loadavg())
                outcome["scenarios"][scenario.key] = metrics
                console.print(
                    f"  {scenario.label}: {metrics['output_throughput']:.0f} out tok/s, TTFT p50 "
                    f"{metrics['p50_ttft_ms']:.0f} ms, TPOT p50/p99 {metrics['p50_tpot_ms']:.1f}/"
                    f"{metrics['p99_tpot_ms']:.1f} ms, failed {metrics['failed']}"
                )
    except (ServerError, ClientError) as exc:
        console.print(f"[red]{name}: {exc}[/]")
        outcome["error"] = str(exc)
    return outcome


def compare(outcomes: list[dict], scenarios: list[Scenario]) -> list[dict]:
    """One row per (scenario, system) with thunder's ratios to the peer measured in this run."""
    rows = []
    for scenario in scenarios:
        peer = next((o["scenarios"].get(scenario.key) for o in outcomes if o["system"] == PEER), None)
        for outcome in outcomes:
            metrics = outcome["scenarios"].get(scenario.key)
            if metrics is None:
                continue
            row = {"scenario": scenario.key, "system": outcome["system"], **metrics}
            if peer is not None and outcome["system"] != PEER:
                row["tok_s_ratio"] = _ratio(metrics["output_throughput"], peer["output_throughput"])
                row["tpot_p99_ratio"] = _ratio(metrics["p99_tpot_ms"], peer["p99_tpot_ms"])
                row["ttft_p99_ratio"] = _ratio(metrics["p99_ttft_ms"], peer["p99_ttft_ms"])
            rows.append(row)
    return rows


def _ratio(ours: float, theirs: float) -> float:
    return ours / theirs if theirs else math.nan


def check_targets(rows: list[dict], scenarios: list[Scenario]) -> list[dict]:
    """Issue 6 point 8: best thunder mode >= 1.0x vLLM output tok/s at rate inf; disaggregated thunder's p99
    TPOT <= vLLM's at 2 and 4 req/s."""
    targets = []
    for scenario in scenarios:
        mine = [r for r in rows if r["scenario"] == scenario.key and "tok_s_ratio" in r]
        if math.isinf(scenario.request_rate) and mine:
            best = max(mine, key=lambda r: r["tok_s_ratio"])
            targets.append({"target": "best thunder out tok/s / vLLM >= 1.0", "scenario": scenario.key,
                            "system": best["system"], "value": best["tok_s_ratio"],
                            "met": best["tok_s_ratio"] >= 1.0})  # fmt: skip
        disagg = next((r for r in mine if r["system"] == "thunder-disaggregated"), None)
        if scenario.request_rate in (2.0, 4.0) and disagg is not None:
            targets.append({"target": "disaggregated p99 TPOT / vLLM <= 1.0", "scenario": scenario.key,
                            "system": disagg["system"], "value": disagg["tpot_p99_ratio"],
                            "met": disagg["tpot_p99_ratio"] <= 1.0})  # fmt: skip
    return targets


def print_tables(rows: list[dict], scenarios: list[Scenario], targets: list[dict]) -> None:
    columns = ("system", "req/s", "out tok/s", "TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99", "ok/failed",
               "tok/s ×vLLM", "TPOT p99 ×vLLM", "load avg")  # fmt: skip
    for scenario in scenarios:
        table = Table(title=f"{scenario.label} (latencies in ms)")
        for col in columns:
            table.add_column(col, justify="left" if col == "system" else "right")
        for r in (r for r in rows if r["scenario"] == scenario.key):
            table.add_row(
                r["system"], f"{r['request_throughput']:.2f}", f"{r['output_throughput']:.0f}",
                f"{r['p50_ttft_ms']:.0f}", f"{r['p99_ttft_ms']:.0f}", f"{r['p50_tpot_ms']:.1f}",
                f"{r['p99_tpot_ms']:.1f}", f"{r['completed']}/{r['failed']}", _fmt(r.get("tok_s_ratio")),
                _fmt(r.get("tpot_p99_ratio")), f"{r['loadavg_before']:.1f}->{r['loadavg_after']:.1f}",
            )  # fmt: skip
        console.print(table)
    for t in targets:
        verdict = "[green]met[/]" if t["met"] else "[red]missed[/]"
        console.print(f"target {t['target']} @ {t['scenario']}: {t['system']} {t['value']:.2f} -> {verdict}")
    console.print(
        "×vLLM = thunder / vLLM in this run (tok/s: higher is better; TPOT p99: lower is better). load avg = the "
        "machine's 1-min load before -> after (other jobs share the cores: compare only within one run)."
    )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # NOTE: unwinds through running_server, which kills the server's group


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)
    args.model_dir = (args.model_dir or default_model_dir()).expanduser().resolve()
    args.shape = LoadShape()
    console.print(
        f"model {args.model_dir}, {args.dtype}; scenarios {', '.join(s.key for s in args.scenarios)}; "
        f"systems {', '.join(args.systems)}; load client: vllm bench serve ({args.venvs / 'vllm'})"
    )
    work = args.logs or Path(tempfile.mkdtemp(prefix="thunder-serving-"))
    work.mkdir(parents=True, exist_ok=True)
    console.print(f"server and client logs: {work}")
    outcomes = [bench_system(name, args, work) for name in args.systems]
    rows = compare(outcomes, args.scenarios)
    targets = check_targets(rows, args.scenarios)
    print_tables(rows, args.scenarios, targets)
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {"cpu": _cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()},
        "model_dir": str(args.model_dir),
        "dtype": args.dtype,
        "thunder_args": args.thunder_args,
        "load": {
            "client": "vllm bench serve",
            "min_prompt_tokens": args.shape.min_prompt_tokens,
            "max_prompt_tokens": args.shape.max_prompt_tokens,
            "output_tokens": args.shape.output_tokens,
            "seed": args.shape.seed,
            "warmup_prompts": args.warmup_prompts,
        },
        "systems": [{k: v for k, v in o.items() if k != "scenarios"} for o in outcomes],
        "results": rows,
        "targets": targets,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    console.print(f"saved {args.out}")


if __name__ == "__main__":
    main()
