"""`thunder simulate` end to end: a plan written by `thunder plan`, replayed through the simulator."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from thunder.cli import _register, app

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def plan_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _register()
    out = tmp_path_factory.mktemp("plan") / "plan.json"
    result = CliRunner().invoke(app, ["plan", "--cluster", str(ROOT / "examples/clusters/paper-a40-3090ti-8.toml"),
                                      "--model", "llama-30b", "--workload", "conversation", "--rate", "1.0",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_simulate_prints_metrics(plan_file: Path) -> None:
    result = CliRunner().invoke(app, ["simulate", "--plan", str(plan_file), "--workload", "conversation",
                                      "--rate", "0.5", "--requests", "200"])
    assert result.exit_code == 0, result.output
    for label in ("SLO attainment", "TTFT P99", "goodput", "USD per 1k good requests", "scale needed"):
        assert label in result.output
    assert "200" in result.output


def test_simulate_bad_rate_and_missing_plan_exit_2(plan_file: Path, tmp_path: Path) -> None:
    bad = CliRunner().invoke(app, ["simulate", "--plan", str(plan_file), "--rate", "-1"])
    assert bad.exit_code == 2 and "--rate=-1" in bad.output
    missing = CliRunner().invoke(app, ["simulate", "--plan", str(tmp_path / "nope.json")])
    assert missing.exit_code == 2 and "not found" in missing.output
