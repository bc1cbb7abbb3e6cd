"""The offline-throughput harness: runner protocol (benchmarks/peers/runner_common.py) and the driver's maths."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.offline_throughput import SYSTEMS, agreement, interpreter, summarize
from benchmarks.peers.runner_common import RESULT_PREFIX, TreeRssSampler, run


def test_rss_sampler_counts_child_processes() -> None:
    hog = "b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); import time; time.sleep(1.5)"
    with TreeRssSampler(interval_s=0.05) as alone:
        time.sleep(0.2)
    with TreeRssSampler(interval_s=0.05) as with_child:
        subprocess.run([sys.executable, "-c", hog], check=True)
    assert with_child.peak_bytes - alone.peak_bytes > 250 * 2**20


def test_run_prints_one_result_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prompts = [[1, 2, 3], [4, 5], [6, 7, 8, 9]]
    (tmp_path / "w.json").write_text(json.dumps({"prompt_token_ids": prompts, "max_new_tokens": 5}))
    calls: list[tuple[int, int]] = []

    def load():
        def generate(batch: list[list[int]], max_tokens: int) -> list[list[int]]:
            calls.append((len(batch), max_tokens))
            time.sleep(0.01 * max_tokens)  # a decode that costs time per token
            return [[p[0]] * max_tokens for p in batch]

        return generate

    args = argparse.Namespace(
        workload=tmp_path / "w.json", dtype="float32", threads=2, repeats=2, outputs=tmp_path / "out.json"
    )
    run(system="toy", args=args, load=load, versions={"toy": "1"})
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(RESULT_PREFIX)]
    assert len(lines) == 1
    result = json.loads(lines[0][len(RESULT_PREFIX) :])
    # warm-up, 3x TTFT (1 token), 3x single request (5 tokens), then the workload twice
    assert calls == [(1, 4), (1, 1), (1, 1), (1, 1), (1, 5), (1, 5), (1, 5), (3, 5), (3, 5)]
    assert result["generated_tokens"] == 15 and result["prompt_tokens"] == 9
    assert result["tok_s"] == pytest.approx(15 / result["seconds"])
    assert result["seconds"] == min(result["all_seconds"]) >= 0.05
    assert 5 <= result["ttft_ms"] < 100 and result["decode_tok_s"] > 0
    assert json.loads((tmp_path / "out.json").read_text()) == [[1] * 5, [4] * 5, [6] * 5]


def test_agreement_is_the_shared_prefix_share() -> None:
    assert agreement([[1, 2, 3, 4]], [[1, 2, 3, 4]]) == 1.0
    assert agreement([[1, 2, 3, 4]], [[1, 2, 9, 4]]) == 0.5
    assert agreement([[1, 2], [5, 6]], [[9, 2], [5, 6]]) == 0.5


def test_ratios_are_thunder_over_peer_within_a_dtype() -> None:
    def result(system: str, dtype: str, tok_s: float) -> dict:
        return {"system": system, "dtype": dtype, "tok_s": tok_s, "output_token_ids": [[1, 2]]}

    rows = summarize(
        [result("thunder", "bf16", 300), result("vllm", "bf16", 200), result("vllm", "fp32", 50)]
    )
    by = {(r["system"], r["dtype"]): r for r in rows}
    assert by["vllm", "bf16"]["thunder_ratio"] == 1.5
    assert by["thunder", "bf16"]["thunder_ratio"] == 1.0
    assert "thunder_ratio" not in by["vllm", "fp32"]  # no thunder figure in fp32: no ratio invented
    assert "output_token_ids" not in by["vllm", "bf16"]


def test_missing_peer_venv_is_reported_not_fatal(tmp_path: Path) -> None:
    assert interpreter(SYSTEMS["vllm"], tmp_path) is None
    assert interpreter(SYSTEMS["thunder"], tmp_path) == Path(sys.executable)


def test_peers_do_not_inherit_thunders_process_defaults() -> None:
    # importing thunder (the driver does, for the default model dir) sets OMP_WAIT_POLICY/THP_MEM_ALLOC_ENABLE
    # in os.environ; the peers' environment is the one the driver was launched with
    code = (
        "import os, benchmarks.offline_throughput as o, benchmarks.serving_servers as s, thunder; "
        "print(os.environ.get('OMP_WAIT_POLICY'), o.LAUNCH_ENV.get('OMP_WAIT_POLICY'), "
        "o.LAUNCH_ENV.get('THP_MEM_ALLOC_ENABLE'), s.LAUNCH_ENV.get('OMP_WAIT_POLICY'))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "THP_MEM_ALLOC_ENABLE")}
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root, check=True
    )
    assert out.stdout.split() == ["PASSIVE", "None", "None", "None"]
