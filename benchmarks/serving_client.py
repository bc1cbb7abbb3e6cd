"""The one neutral load client for every server: `vllm bench serve`, run from the vLLM venv.

The random dataset's lengths follow the installed vLLM (`vllm/benchmarks/datasets/utils.py`): input lengths are
uniform in [floor(L·(1−r)), ceil(L·(1+r))] with L = `--random-input-len` minus the tokenizer's special tokens
(0 for SmolLM2), and a single float ratio applies to the *output* length too. So 16–64 prompt tokens with
exactly 64 output tokens needs L = 40 and the JSON ratio {"input": 0.6, "output": 0}; the client's log line
"Sampling input_len from [a, b]" is checked against the intended range.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from benchmarks.serving_servers import VLLM_CLI

# The result fields kept per run (vLLM's names; percentiles per --metric-percentiles).
METRIC_KEYS = (
    "completed", "failed", "duration", "total_input_tokens", "total_output_tokens", "request_throughput",
    "output_throughput", "max_output_tokens_per_s", "max_concurrent_requests",
    "mean_ttft_ms", "p50_ttft_ms", "p99_ttft_ms", "mean_tpot_ms", "p50_tpot_ms", "p99_tpot_ms",
    "mean_e2el_ms", "p50_e2el_ms", "p99_e2el_ms",
)  # fmt: skip
_SAMPLING_LINE = re.compile(r"Sampling input_len from \[(\d+), (\d+)\] and output_len from \[(\d+), (\d+)\]")


class ClientError(RuntimeError):
    """The load client failed or measured something other than the intended workload."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadShape:
    """Request lengths, the same for every scenario and system."""

    min_prompt_tokens: int = 16
    max_prompt_tokens: int = 64
    output_tokens: int = 64
    seed: int = 0

    def random_dataset_flags(self) -> list[str]:
        low, high = self.min_prompt_tokens, self.max_prompt_tokens
        if (low + high) % 2 or not 1 <= low <= high:
            raise ValueError(
                f"prompt tokens [{low}, {high}]: need 1 <= min <= max and an even min+max; try 16, 64"
            )
        mean = (low + high) // 2
        ratio = (high - low) / (high + low)
        return [
            "--dataset-name", "random", "--random-input-len", str(mean),
            "--random-range-ratio", json.dumps({"input": ratio, "output": 0.0}),
            "--random-output-len", str(self.output_tokens), "--ignore-eos", "--seed", str(self.seed),
        ]  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """One load: `num_prompts` requests, Poisson arrivals at `request_rate` req/s (inf: all at t = 0)."""

    num_prompts: int
    request_rate: float

    @property
    def key(self) -> str:
        return f"{self.num_prompts}@{self.rate_text}"

    @property
    def rate_text(self) -> str:
        return "inf" if math.isinf(self.request_rate) else f"{self.request_rate:g}"

    @property
    def label(self) -> str:
        rate = "all at once" if math.isinf(self.request_rate) else f"Poisson {self.request_rate:g} req/s"
        return f"{self.num_prompts} requests, {rate}"


def run_load(
    *,
    client_python: Path,
    base_url: str,
    model: str,
    tokenizer_dir: Path,
    scenario: Scenario,
    shape: LoadShape,
    work_dir: Path,
    name: str,
    timeout_s: float,
) -> dict[str, float]:
    """Run `vllm bench serve` once against `base_url`; return its METRIC_KEYS. Its output goes to work_dir/name.log."""
    log, result = work_dir / f"{name}.log", work_dir / f"{name}.json"
    command = [
        str(client_python), str(VLLM_CLI), "bench", "serve", "--backend", "openai",
        "--base-url", base_url, "--endpoint", "/v1/completions", "--model", model,
        "--tokenizer", str(tokenizer_dir), *shape.random_dataset_flags(), "--temperature", "0",
        "--num-prompts", str(scenario.num_prompts), "--request-rate", scenario.rate_text,
        "--percentile-metrics", "ttft,tpot,e2el", "--metric-percentiles", "50,99", "--disable-tqdm",
        "--save-result", "--result-dir", str(work_dir), "--result-filename", result.name,
    ]  # fmt: skip
    with log.open("w") as sink:
        try:
            code = subprocess.run(
                command, cwd=work_dir, stdout=sink, stderr=subprocess.STDOUT, timeout=timeout_s
            ).returncode
        except subprocess.TimeoutExpired:
            raise ClientError(f"load client timed out after {timeout_s:.0f} s; see {log}") from None
    text = log.read_text(errors="replace")
    if code != 0 or not result.exists():
        tail = "\n".join(text.splitlines()[-20:])
        raise ClientError(f"load client exited with code {code}; last lines of {log}:\n{tail}")
    _check_lengths(text, shape, log)
    raw = json.loads(result.read_text())
    return {key: raw[key] for key in METRIC_KEYS}


def _check_lengths(text: str, shape: LoadShape, log: Path) -> None:
    found = _SAMPLING_LINE.search(text)
    want = (shape.min_prompt_tokens, shape.max_prompt_tokens, shape.output_tokens, shape.output_tokens)
    if found is None or tuple(int(g) for g in found.groups()) != want:
        got = found.group(0) if found else "no sampling line"
        raise ClientError(
            f"load client sampled {got!r}, wanted input {want[:2]} / output {want[2]}; see {log}"
        )
