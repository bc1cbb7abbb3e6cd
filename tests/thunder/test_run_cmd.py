"""`thunder run` argument errors: exit code 2 and one line naming the value and the fix."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from thunder.cli import _register, app

_register()
runner = CliRunner()


@pytest.mark.parametrize(("args", "needle"), [
    (["--kv-transfer-dtype", "int8"], "kv_transfer_dtype='int8'"),
    (["--mode", "both"], "mode='both'"),
    (["--engine", "tpu"], "engine='tpu'"),
    (["--devices", "0"], "devices=0"),
    (["--cpu-policy", "fair"], "cpu_policy='fair'"),
    (["--prefill-nice", "25"], "prefill_nice=25"),
    (["--plan", "/nonexistent/plan.json"], "not found"),
])
def test_bad_options_exit_2_with_one_line(args: list[str], needle: str) -> None:
    result = runner.invoke(app, ["run", *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("thunder run:")]
    assert len(lines) == 1 and needle in lines[0]
