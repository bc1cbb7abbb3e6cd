"""The `thunder` command line: one typer app, one module per sub-command."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="thunder",
    help="thunder: serve LLMs on heterogeneous GPU pools (planner + actor runtime + disaggregated serving).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """thunder: serve LLMs on heterogeneous GPU pools."""


def _register() -> None:
    # NOTE: each sub-command lives in its own module and registers itself on `app` at import time.
    from thunder.cli import (
        generate_cmd,  # noqa: F401
        plan_cmd,  # noqa: F401
        run_cmd,  # noqa: F401
        simulate_cmd,  # noqa: F401
    )


def main() -> None:
    _register()
    app()


__all__ = ["app", "main"]
