"""`thunder simulate`: replay a workload through a saved plan with the discrete-event simulator."""

from __future__ import annotations

import math
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from planner import CostModel, ModelSpec, Plan, SpecError, Workload
from planner.sim_types import SimConfigError
from planner.simulate import simulate
from thunder.cli import app

_ROWS = (
    ("requests", "requests", "{:.0f}"),
    ("completed", "completed", "{:.0f}"),
    ("throughput_rps", "throughput (req/s)", "{:.3f}"),
    ("output_tokens_per_s", "output tokens/s", "{:.1f}"),
    ("total_tokens_per_s", "total tokens/s", "{:.1f}"),
    ("ttft_mean_s", "TTFT mean (s)", "{:.3f}"),
    ("ttft_p90_s", "TTFT P90 (s)", "{:.3f}"),
    ("ttft_p99_s", "TTFT P99 (s)", "{:.3f}"),
    ("tpot_mean_s", "TPOT mean (ms)", "ms"),
    ("tpot_p90_s", "TPOT P90 (ms)", "ms"),
    ("tpot_p99_s", "TPOT P99 (ms)", "ms"),
    ("e2e_mean_s", "E2E mean (s)", "{:.3f}"),
    ("e2e_p99_s", "E2E P99 (s)", "{:.3f}"),
    ("slo_attainment", "SLO attainment", "{:.1%}"),
    ("goodput_rps", "goodput (req/s)", "{:.3f}"),
    ("cost_per_hour", "cost (USD/h)", "{:.2f}"),
    ("usd_per_1k_good_requests", "USD per 1k good requests", "{:.4f}"),
)


def _fmt(value: float, fmt: str) -> str:
    if math.isnan(value) or math.isinf(value):
        return "-"
    return f"{value * 1e3:.1f}" if fmt == "ms" else fmt.format(value)


@app.command("simulate")
def simulate_cmd(
    plan: Path = typer.Option(..., "--plan", help="Plan JSON written by `thunder plan --out`."),
    workload: str = typer.Option("coding", "--workload", help="coding | conversation | a trace CSV path."),
    rate: float | None = typer.Option(None, "--rate", help="Arrival rate req/s (default: the plan's rate)."),
    requests: int = typer.Option(2000, "--requests", "-n", help="Number of requests to simulate."),
    seed: int = typer.Option(0, "--seed", help="Seed of the Poisson arrivals and length draws."),
    replay: bool = typer.Option(False, "--replay", help="Use the trace's own arrival times (scaled to --rate)."),
    slo_scale: float = typer.Option(1.0, "--slo-scale", help="Multiply the workload's TTFT/TPOT deadlines."),
    model: str | None = typer.Option(None, "--model", help="Model name in models.toml or HF config (default: the plan's)."),
    no_compression: bool = typer.Option(False, "--no-compression", help="Send KV uncompressed (FP16) on the wire."),
    round_robin: bool = typer.Option(False, "--round-robin", help="Ignore the plan's routing ratios."),
) -> None:
    """Replay REQUESTS requests of WORKLOAD at RATE through PLAN and print latency, SLO and cost metrics."""
    console = Console()
    try:
        p = Plan.load(plan)
        name = model or p.model
        spec = ModelSpec.from_hf_config(Path(name)) if Path(name).exists() else ModelSpec.from_catalog(name)
        wl = Workload.from_trace(workload, slo_scale=slo_scale, max_context=spec.max_context)
        if rate is not None and not rate > 0:
            raise SpecError(f"--rate={rate}: must be > 0 requests/s")
        if requests < 1:
            raise SpecError(f"--requests={requests}: must be >= 1")
        cost_model = CostModel.from_catalog(spec)
        use_rate = rate if rate is not None else p.rate
        result = simulate(p, wl, cost_model, rate=use_rate, n=requests, seed=seed, replay=replay,
                          compressed=not no_compression, routing="round_robin" if round_robin else "plan")
    except (SpecError, SimConfigError) as exc:
        typer.echo(f"thunder simulate: {exc}", err=True)
        raise typer.Exit(code=2) from None
    slo = wl.effective_slo
    summary = result.summary(slo.ttft_s, slo.tpot_s)
    table = Table(title=f"{p.model} · {wl.name} @ {use_rate:.2f} req/s · {len(p.groups)} replicas {p.phase_counts}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, label, fmt in _ROWS:
        table.add_row(label, _fmt(summary[key], fmt))
    console.print(table)
    console.print(f"SLO: TTFT <= {slo.ttft_s:.2f}s and TPOT <= {slo.tpot_s * 1e3:.0f}ms (scale {slo_scale}); "
                  f"scale needed for 90% attainment: {result.scale_for_attainment(slo.ttft_s, slo.tpot_s):.2f}")
