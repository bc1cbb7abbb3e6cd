"""`thunder plan`: search a deployment plan for a cluster file and print / save it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from planner import Budget, Cluster, ModelSpec, Plan, PlanError, SearchProgress, SpecError, Workload, plan
from planner.planning import default_settings
from thunder.cli import app


def _model(name: str) -> ModelSpec:
    path = Path(name)
    return ModelSpec.from_hf_config(path) if path.exists() else ModelSpec.from_catalog(name)


def render_plan(p: Plan, console: Console) -> None:
    """Print a plan as a table (groups, GPU types, phase, TP/PP, layer split, routing) plus its predictions."""
    table = Table(title=f"{p.model} · {p.workload} @ {p.rate:.2f} req/s · ${p.cost_per_hour:.2f}/h")
    for col in ("group", "phase", "GPUs", "TP x PP", "layer split", "arrivals", "KV handoff to"):
        table.add_column(col)
    for g in p.groups:
        types: dict[str, int] = {}
        for t in g.gpu_types:
            types[t] = types.get(t, 0) + 1
        gpus = " + ".join(f"{n}x {t}" for t, n in types.items())
        share = p.routing.arrival.get(g.id)
        handoff = p.routing.handoff.get(g.id, {})
        table.add_row(g.id, g.phase, gpus, f"{'/'.join(map(str, g.tp))} x {g.pp}", "/".join(map(str, g.layer_split)),
                      "" if share is None else f"{share:.0%}",
                      ", ".join(f"{d} {r:.0%}" for d, r in sorted(handoff.items(), key=lambda kv: -kv[1])))
    console.print(table)
    pr = p.prediction
    console.print(f"phases {p.phase_counts} · predicted SLO attainment {pr.slo_attainment:.1%} "
                  f"(TTFT <= {p.ttft_slo_s:.2f}s and TPOT <= {p.tpot_slo_s:.3f}s) · mean TTFT {pr.mean_ttft_s:.2f}s · "
                  f"mean TPOT {pr.mean_tpot_s * 1e3:.0f}ms · {pr.throughput_tokens_s:.0f} output tok/s · "
                  f"SLO-feasible capacity {pr.capacity_rps:.2f} req/s")
    if p.unused_device_ids:
        console.print(f"unused devices: {', '.join(p.unused_device_ids)}")


@app.command("plan")
def plan_cmd(
    cluster: Path = typer.Option(..., "--cluster", help="Cluster TOML (see examples/clusters/)."),
    model: str = typer.Option("llama-30b", "--model", help="Name in models.toml, or a HF config.json / model dir."),
    workload: str = typer.Option("coding", "--workload", help="coding | conversation | a trace CSV path."),
    budget: float | None = typer.Option(None, "--budget", help="USD/h cap (default: the cluster's total price)."),
    rate: float | None = typer.Option(None, "--rate", help="Arrival rate req/s (default: the trace's mean rate)."),
    slo_scale: float = typer.Option(1.0, "--slo-scale", help="Multiply the workload's TTFT/TPOT deadlines."),
    seed: int = typer.Option(0, "--seed"),
    searches: int | None = typer.Option(None, "--searches", min=1,
                                        help="Independent tabu searches whose best plans compete in the simulator "
                                             "(default: 2 up to 64 GPUs, else 1): more is slower and less "
                                             "dependent on --seed."),
    no_compression: bool = typer.Option(False, "--no-compression", help="Plan with uncompressed KV handoff."),
    out: Path | None = typer.Option(None, "--out", help="Write the plan JSON here."),
) -> None:
    """Search groups, phases (prefill/decode), TP/PP and routing for a cluster; print and optionally save it."""
    console = Console()
    try:
        spec = Cluster.from_toml(cluster)
        model_spec = _model(model)
        wl = Workload.from_trace(workload, rate=rate, slo_scale=slo_scale)
        cap = Budget(usd_per_hour=budget if budget is not None else spec.price_per_hour + 1e-9)
        settings = default_settings(len(spec.devices))
        settings = replace(settings, searches=searches or settings.searches)
        with Progress(TextColumn("tabu search"), BarColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                      console=console, transient=True) as bar:
            task = bar.add_task("", total=settings.max_iters * settings.searches)

            def show(pr: SearchProgress) -> None:
                bar.update(task, completed=pr.iteration, description=(
                    f"iter {pr.iteration} {pr.move:5s} groups={pr.groups} best attain={pr.best_score[0]:.3f} "
                    f"capacity={pr.best_score[1]:.2f} req/s"))

            result = plan(spec, model_spec, wl, cap, seed=seed, settings=settings, compress_kv=not no_compression,
                          on_progress=show)
    except (SpecError, PlanError) as exc:
        typer.echo(f"thunder plan: {exc}", err=True)
        raise typer.Exit(code=2) from None
    render_plan(result, console)
    console.print(f"searched {result.search.get('iterations')} iterations in {result.search.get('seconds')}s")
    if out is not None:
        result.save(out)
        console.print(f"plan written to {out}")
