"""`thunder plan` end to end through the typer app."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from planner import Plan
from thunder.cli import _register, app

ROOT = Path(__file__).resolve().parents[2]


def test_plan_command_prints_table_and_writes_json(tmp_path: Path) -> None:
    _register()
    out = tmp_path / "plan.json"
    result = CliRunner().invoke(app, ["plan", "--cluster", str(ROOT / "examples/clusters/paper-a40-3090ti-8.toml"),
                                      "--model", "llama-30b", "--workload", "conversation", "--rate", "1.5",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "predicted SLO attainment" in result.output and "prefill" in result.output
    p = Plan.load(out)
    assert {g.phase for g in p.groups} == {"prefill", "decode"} and p.rate == 1.5


def test_plan_command_bad_input_exits_2_with_one_line(tmp_path: Path) -> None:
    _register()
    result = CliRunner().invoke(app, ["plan", "--cluster", str(tmp_path / "missing.toml"), "--model", "llama-30b"])
    assert result.exit_code == 2
    assert "missing.toml: file not found" in result.output
