"""`thunder run`: serve a model behind an OpenAI-compatible HTTP API."""

from __future__ import annotations

import typer

from thunder.cli import app


@app.command("run")
def run(
    model: str = typer.Option("smollm2-135m-instruct", help="Model name or local HF directory."),
    host: str = typer.Option("127.0.0.1", help="Address to bind."),
    port: int = typer.Option(8000, help="Port to bind."),
) -> None:
    """Serve MODEL with disaggregated prefill/decode device actors (OpenAI-compatible API)."""
    typer.echo(
        "thunder run: the serving stack (device actors, router, HTTP server) is not built yet "
        "(issue 6). Use `thunder --help` for what is available.",
        err=True,
    )
    raise typer.Exit(code=2)
