"""`thunder run`: serve a model behind the OpenAI-compatible HTTP API with disaggregated device actors."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path

import typer
from rich.console import Console

from thunder.cli import app


@app.command("run")
def run(
    model: str = typer.Option(
        "smollm2-135m-instruct",
        help="Embedded model, HF directory, .gguf, or a models.toml name (with --engine sim).",
    ),
    devices: int | None = typer.Option(
        None,
        help="Devices to discover: the first N CUDA devices, or N CPU "
        "workers (default: all CUDA devices, or 2 CPU workers).",
    ),
    cluster: Path | None = typer.Option(None, help="Cluster TOML to plan for (examples/clusters/)."),
    plan: Path | None = typer.Option(None, help="Serve this plan JSON (from `thunder plan --out`) as is."),
    engine: str = typer.Option("torch", help="torch (real weights) | sim (simulated step times)."),
    mode: str = typer.Option("disaggregated", help="disaggregated (prefill/decode replicas) | colocated."),
    host: str = typer.Option("127.0.0.1", help="Address to bind."),
    port: int = typer.Option(8000, help="Port to bind."),
    kv_transfer_dtype: str = typer.Option("int4", help="KV wire format prefill->decode: int4 | fp16 | fp32."),
    kv_group_size: int = typer.Option(64, help="int4 quantization group size (elements)."),
    dtype: str = typer.Option("auto", help="Engine dtype: auto | bfloat16 | float16 | float32."),
    threads_per_device: int | None = typer.Option(
        None, help="torch threads per CPU device (default: from --cpu-policy)."
    ),
    cpu_policy: str = typer.Option(
        "decode-first",
        help="How CPU device processes share the cores: decode-first (each decode device gets all cores' "
        "threads, only those prefill leaves while its batch is under 16 sequences; prefill devices half the "
        "cores) | even (cores split evenly). Colocated devices always split evenly.",
    ),
    prefill_nice: int = typer.Option(
        0,
        help="OS niceness (0-19) of prefill device processes under --cpu-policy decode-first: decode runs first "
        "when both are ready; on a machine shared with other jobs a niced prefill also waits behind them.",
    ),
    kv_cache_gib: float = typer.Option(1.0, help="KV pool per device, GiB."),
    max_num_seqs: int = typer.Option(128, help="Most sequences in a device's batch."),
    max_pending: int = typer.Option(1024, help="Unfinished requests before new ones get 503."),
    trace: str = typer.Option(
        "conversation", help="Workload the planner plans for (coding | conversation | CSV)."
    ),
    rate: float | None = typer.Option(
        None,
        help="Arrival rate (req/s) to plan for (default: the trace's, or half of what these devices can serve "
        "within the SLO when that is less).",
    ),
    slo_scale: float | None = typer.Option(
        None,
        help="Multiply the trace's TTFT/TPOT deadlines (default: 1, doubled until these devices can meet them).",
    ),
    profile: bool = typer.Option(True, help="Calibrate CPU devices with a short start-up profile."),
    log_level: str = typer.Option("WARNING", help="Python log level."),
) -> None:
    """Serve MODEL: discover devices, plan, start one process per device, open the OpenAI API."""
    from planner import SpecError
    from thunder.engine.config import ConfigError
    from thunder.models import ModelError
    from thunder.runtime.config import RuntimeConfig

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = RuntimeConfig(
            model=model,
            engine=engine,
            dtype=dtype,
            mode=mode,
            devices=devices,
            cluster=str(cluster) if cluster else None,
            plan=str(plan) if plan else None,
            trace=trace,
            rate=rate,
            slo_scale=slo_scale,
            kv_transfer_dtype=kv_transfer_dtype,
            kv_group_size=kv_group_size,
            threads_per_device=threads_per_device,
            cpu_policy=cpu_policy,
            prefill_nice=prefill_nice,
            kv_cache_gib=kv_cache_gib,
            max_num_seqs=max_num_seqs,
            max_pending=max_pending,
            profile=profile,
        )
        from actors import run as run_loop

        with contextlib.suppress(KeyboardInterrupt):
            run_loop(_serve(config, host, port, Console(stderr=True)))
    except (ConfigError, SpecError, ModelError, OSError) as exc:
        typer.echo(f"thunder run: {exc}", err=True)
        raise typer.Exit(code=2) from None


async def _serve(config: object, host: str, port: int, console: Console) -> None:
    from thunder.cli.plan_cmd import render_plan
    from thunder.metrics import ServingMetrics
    from thunder.runtime.backend import ActorBackend
    from thunder.runtime.config import RuntimeConfig
    from thunder.runtime.launch import start_runtime
    from thunder.server import create_app, start

    assert isinstance(config, RuntimeConfig)
    metrics = ServingMetrics(model_name=config.model)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # NOTE: a stop event, not task cancellation: shutdown then runs as ordinary code, in order.
        loop.add_signal_handler(sig, stop.set)
    with console.status("starting", spinner="dots") as status:

        def progress(text: str) -> None:
            console.log(text)
            status.update(text)

        runtime = await start_runtime(config, metrics=metrics, on_progress=progress)
    server = None
    try:
        metrics.set_usd_per_hour(runtime.plan.cost_per_hour)
        render_plan(runtime.plan, console)
        server = await start(create_app(ActorBackend(runtime), metrics=metrics), host, port)
        console.log(f"serving {config.model} on {server.url}/v1 (Ctrl-C stops)")
        await stop.wait()
        console.log("stopping")
    finally:
        if server is not None:
            await server.close()
        await runtime.shutdown()
        console.log("stopped; device processes are gone")
