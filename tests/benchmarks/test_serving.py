"""benchmarks/serving.py and its helpers: load-shape flags, ratios and targets, server lifecycle (real processes)."""

from __future__ import annotations

import json
import math
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from benchmarks.serving import check_targets, compare
from benchmarks.serving_client import LoadShape, Scenario
from benchmarks.serving_servers import ServerError, ServerSpec, free_port, get_json, running_server


def _vllm_random_ranges(flags: list[str], num_special_tokens: int = 0) -> tuple[int, int, int, int]:
    """vLLM 0.32's `get_sampling_params` (benchmarks/datasets/utils.py): the ranges it samples lengths from."""
    args = dict(zip(flags[::2], flags[1::2], strict=False))
    ratio = json.loads(args["--random-range-ratio"])
    real_input = int(args["--random-input-len"]) - num_special_tokens
    output = int(args["--random-output-len"])
    return (
        math.floor(real_input * (1 - ratio["input"])),
        math.ceil(real_input * (1 + ratio["input"])),
        max(math.floor(output * (1 - ratio["output"])), 1),
        max(math.ceil(output * (1 + ratio["output"])), 1),
    )


@pytest.mark.parametrize(("low", "high", "out"), [(16, 64, 64), (32, 64, 128), (8, 8, 1)])
def test_random_dataset_flags_sample_the_intended_lengths(low: int, high: int, out: int) -> None:
    flags = LoadShape(min_prompt_tokens=low, max_prompt_tokens=high, output_tokens=out).random_dataset_flags()
    value_flags = [f for f in flags if f != "--ignore-eos"]
    assert _vllm_random_ranges(value_flags) == (low, high, out, out)
    assert "--ignore-eos" in flags


def test_random_dataset_flags_reject_an_odd_range() -> None:
    with pytest.raises(ValueError, match=r"prompt tokens \[16, 63\]"):
        LoadShape(min_prompt_tokens=16, max_prompt_tokens=63).random_dataset_flags()


def test_scenario_names() -> None:
    assert Scenario(num_prompts=64, request_rate=math.inf).key == "64@inf"
    assert Scenario(num_prompts=256, request_rate=2.0).key == "256@2"
    assert Scenario(num_prompts=64, request_rate=4.0).label == "64 requests, Poisson 4 req/s"


def _metrics(tok_s: float, tpot_p99: float) -> dict[str, float]:
    return {"output_throughput": tok_s, "p99_tpot_ms": tpot_p99, "p99_ttft_ms": 100.0}


def test_ratios_and_targets_against_the_peer_of_the_same_run() -> None:
    inf, two = Scenario(num_prompts=64, request_rate=math.inf), Scenario(num_prompts=64, request_rate=2.0)
    outcomes = [
        {
            "system": "thunder-disaggregated",
            "scenarios": {inf.key: _metrics(400, 90), two.key: _metrics(100, 50)},
        },
        {
            "system": "thunder-colocated",
            "scenarios": {inf.key: _metrics(600, 120), two.key: _metrics(100, 70)},
        },
        {"system": "vllm", "scenarios": {inf.key: _metrics(500, 100), two.key: _metrics(100, 40)}},
    ]
    rows = compare(outcomes, [inf, two])
    by = {(r["scenario"], r["system"]): r for r in rows}
    assert by[(inf.key, "thunder-colocated")]["tok_s_ratio"] == pytest.approx(1.2)
    assert by[(two.key, "thunder-disaggregated")]["tpot_p99_ratio"] == pytest.approx(1.25)
    assert "tok_s_ratio" not in by[(inf.key, "vllm")]
    targets = check_targets(rows, [inf, two])
    assert [(t["scenario"], t["system"], t["met"]) for t in targets] == [
        (inf.key, "thunder-colocated", True),  # the better thunder mode counts at rate inf
        (two.key, "thunder-disaggregated", False),  # 50 ms > 40 ms
    ]


def test_no_ratios_without_the_peer() -> None:
    inf = Scenario(num_prompts=64, request_rate=math.inf)
    rows = compare([{"system": "thunder-colocated", "scenarios": {inf.key: _metrics(600, 120)}}], [inf])
    assert "tok_s_ratio" not in rows[0]
    assert check_targets(rows, [inf]) == []


# A toy server: serves /health, starts a child that would outlive it, and ignores SIGINT (so only the
# process-group SIGKILL can end it).
_TOY_SERVER = textwrap.dedent(
    """
    import http.server, json, signal, subprocess, sys
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    open(sys.argv[2], "w").write(str(child.pid))
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"status": "ready"}).encode()
            self.send_response(200); self.end_headers(); self.wfile.write(body)
        def log_message(self, *args): pass
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Health).serve_forever()
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}/stat").exists() else ""
    return " Z " not in stat  # a zombie is dead, only not yet reaped by its parent


def test_running_server_waits_for_health_and_kills_the_whole_group(tmp_path: Path) -> None:
    port, child_pid_file = free_port(), tmp_path / "child.pid"
    spec = ServerSpec(
        name="toy", command=(sys.executable, "-c", _TOY_SERVER, str(port), str(child_pid_file)), port=port,
        ready_timeout_s=30.0, stop_grace_s=0.5,
    )  # fmt: skip
    with running_server(spec, tmp_path / "toy.log") as startup_s:
        assert startup_s >= 0
        assert get_json(spec.base_url + "/health") == {"status": "ready"}
        child_pid = int(child_pid_file.read_text())
        assert _alive(child_pid)
    deadline = time.monotonic() + 10
    while _alive(child_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child_pid), "the server's child outlived running_server"


def test_a_server_that_dies_before_ready_raises_with_its_log(tmp_path: Path) -> None:
    spec = ServerSpec(
        name="broken", command=(sys.executable, "-c", "print('weights not found'); raise SystemExit(3)"),
        port=free_port(), ready_timeout_s=30.0,
    )  # fmt: skip
    with pytest.raises(ServerError, match=r"(?s)broken exited with code 3.*weights not found"):
        with running_server(spec, tmp_path / "broken.log"):
            pytest.fail("never ready")
