"""`thunder generate`: chat template + greedy by default, printed as it streams; clear errors."""

from __future__ import annotations

from typer.testing import CliRunner

from thunder.cli import _register, app

_register()


def test_generate_answers_the_capital_of_france_offline() -> None:
    result = CliRunner().invoke(app, ["generate", "What is the capital of France?", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "The capital of France is Paris."


def test_raw_prompt_and_max_tokens_bound_the_output() -> None:
    args = ["generate", "The quick brown fox", "--raw", "--max-tokens", "3", "--threads", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert 0 < len(result.output.strip()) < 40


def test_bad_options_exit_2_with_one_line() -> None:
    result = CliRunner().invoke(app, ["generate", "hi", "--model", "no-such-model"])
    assert result.exit_code == 2 and "not found" in result.output
    result = CliRunner().invoke(app, ["generate", "hi", "--temperature", "-1"])
    assert result.exit_code == 2 and "temperature=-1" in result.output
