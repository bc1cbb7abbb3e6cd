"""`Workload` (arrival rate, prompt/output length samples, SLOs), `SLO` and `Budget`."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np

from planner.errors import SpecError
from planner.gpus import data_dir

TRACE_FILES = {"coding": "azure_code_2023.csv", "conversation": "azure_conv_2023.csv"}


@dataclass(frozen=True, slots=True, kw_only=True)
class SLO:
    """Per-request deadlines (before `Workload.slo_scale`). A request attains its SLO when both are met."""

    ttft_s: float
    """Time to first token."""
    tpot_s: float
    """Time per output token after the first: (e2e - ttft) / (output_len - 1)."""

    def __post_init__(self) -> None:
        if not (self.ttft_s > 0 and self.tpot_s > 0):
            raise SpecError(f"SLO(ttft_s={self.ttft_s}, tpot_s={self.tpot_s}): both must be > 0 seconds")

    def scaled(self, scale: float) -> SLO:
        return SLO(ttft_s=self.ttft_s * scale, tpot_s=self.tpot_s * scale)


# NOTE: base deadlines for a 30B-class model on PCIe-class GPUs; experiments sweep `slo_scale` around them.
DEFAULT_SLOS = {
    "coding": SLO(ttft_s=2.5, tpot_s=0.2),
    "conversation": SLO(ttft_s=2.0, tpot_s=0.2),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Budget:
    """Price cap in USD per hour for the devices a plan uses."""

    usd_per_hour: float

    def __post_init__(self) -> None:
        if not self.usd_per_hour > 0:
            raise SpecError(f"Budget(usd_per_hour={self.usd_per_hour}): must be > 0, e.g. 13.54")


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Workload:
    """Requests: Poisson arrivals at `rate` (req/s) whose (prompt, output) lengths are drawn from paired samples.

    `prompt_lens` / `output_lens`: int64 arrays of equal length (read-only). `arrival_times_s`, when set, are the
    trace's own arrival offsets in seconds (same length), for replays that keep the original burstiness.
    """

    name: str
    rate: float
    prompt_lens: np.ndarray
    output_lens: np.ndarray
    slo: SLO
    slo_scale: float = 1.0
    arrival_times_s: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise SpecError(f"workload {self.name!r}: rate={self.rate} must be > 0 requests/s")
        if not self.slo_scale > 0:
            raise SpecError(f"workload {self.name!r}: slo_scale={self.slo_scale} must be > 0")
        prompts = np.asarray(self.prompt_lens, dtype=np.int64)
        outputs = np.asarray(self.output_lens, dtype=np.int64)
        if prompts.ndim != 1 or prompts.shape != outputs.shape or prompts.size == 0:
            raise SpecError(
                f"workload {self.name!r}: prompt_lens {prompts.shape} and output_lens {outputs.shape} must be "
                "non-empty 1-D arrays of equal length"
            )
        if prompts.min() < 1 or outputs.min() < 1:
            raise SpecError(f"workload {self.name!r}: every prompt and output length must be >= 1 token")
        for arr in (prompts, outputs):
            arr.setflags(write=False)
        object.__setattr__(self, "prompt_lens", prompts)
        object.__setattr__(self, "output_lens", outputs)
        if self.arrival_times_s is not None:
            times = np.asarray(self.arrival_times_s, dtype=np.float64)
            if times.shape != prompts.shape:
                raise SpecError(f"workload {self.name!r}: arrival_times_s must have one entry per request")
            times.setflags(write=False)
            object.__setattr__(self, "arrival_times_s", times)

    # ---- derived ------------------------------------------------------------------------------------------------
    @property
    def effective_slo(self) -> SLO:
        """The deadlines requests are judged by: `slo` scaled by `slo_scale`."""
        return self.slo.scaled(self.slo_scale)

    @property
    def mean_prompt(self) -> float:
        return float(self.prompt_lens.mean())

    @property
    def mean_output(self) -> float:
        return float(self.output_lens.mean())

    def with_rate(self, rate: float) -> Workload:
        return replace(self, rate=rate)

    def with_slo_scale(self, scale: float) -> Workload:
        return replace(self, slo_scale=scale)

    def clipped(self, max_context: int) -> Workload:
        """Fit every request into `max_context` tokens: keep the output (at most max_context - 1 tokens) and
        truncate the prompt from the left, as a server with a fixed context window would."""
        if max_context < 2:
            raise SpecError(f"clipped(max_context={max_context}): needs >= 2 tokens")
        outputs = np.minimum(self.output_lens, max_context - 1)
        prompts = np.minimum(self.prompt_lens, max_context - outputs)
        return replace(self, prompt_lens=prompts, output_lens=outputs)

    def sample(self, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """`n` paired (prompt, output) lengths drawn with replacement (deterministic for a seed)."""
        idx = np.random.default_rng(seed).integers(0, self.prompt_lens.size, size=n)
        return self.prompt_lens[idx], self.output_lens[idx]

    # ---- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_trace(
        cls,
        trace: str | Path,
        *,
        rate: float | None = None,
        slo: SLO | None = None,
        slo_scale: float = 1.0,
        max_context: int | None = None,
    ) -> Workload:
        """Load "coding", "conversation" (the Azure 2023 traces) or a CSV path with columns
        TIMESTAMP,ContextTokens,GeneratedTokens. `rate` defaults to the trace's own mean rate; `max_context`
        clips requests (see `clipped`)."""
        key = str(trace)
        path = data_dir() / "traces" / TRACE_FILES[key] if key in TRACE_FILES else Path(trace)
        name = key if key in TRACE_FILES else path.stem
        times, prompts, outputs = _read_trace_csv(path)
        span = float(times[-1] - times[0]) if times.size > 1 else 0.0
        trace_rate = (times.size - 1) / span if span > 0 else 1.0
        default_slo = DEFAULT_SLOS.get(key, DEFAULT_SLOS["conversation"])
        wl = cls(
            name=name,
            rate=float(rate) if rate is not None else trace_rate,
            prompt_lens=prompts,
            output_lens=outputs,
            slo=slo or default_slo,
            slo_scale=slo_scale,
            arrival_times_s=times - times[0],
        )
        return wl.clipped(max_context) if max_context is not None else wl

    @classmethod
    def synthetic(
        cls,
        *,
        name: str = "synthetic",
        rate: float,
        prompt_mean: float,
        output_mean: float,
        n: int = 4096,
        slo: SLO,
        slo_scale: float = 1.0,
        seed: int = 0,
    ) -> Workload:
        """Lengths drawn from geometric-like (exponential, rounded up) distributions with the given means."""
        rng = np.random.default_rng(seed)
        prompts = np.ceil(rng.exponential(prompt_mean - 0.5, size=n)).astype(np.int64).clip(min=1)
        outputs = np.ceil(rng.exponential(output_mean - 0.5, size=n)).astype(np.int64).clip(min=1)
        return cls(name=name, rate=rate, prompt_lens=prompts, output_lens=outputs, slo=slo, slo_scale=slo_scale)


def _read_trace_csv(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    try:
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except FileNotFoundError:
        raise SpecError(f"workload trace {str(path)!r} not found; use 'coding', 'conversation' or a CSV path") from None
    need = {"TIMESTAMP", "ContextTokens", "GeneratedTokens"}
    if not rows or not need <= set(rows[0]):
        raise SpecError(f"{path}: expected a CSV with columns {sorted(need)} and at least one row")
    try:
        stamps = [datetime.fromisoformat(r["TIMESTAMP"][:26]) for r in rows]
        prompts = np.array([int(r["ContextTokens"]) for r in rows], dtype=np.int64)
        outputs = np.array([int(r["GeneratedTokens"]) for r in rows], dtype=np.int64)
    except ValueError as exc:
        raise SpecError(f"{path}: bad value ({exc}); TIMESTAMP must be ISO time, token counts integers") from None
    t0 = stamps[0]
    times = np.array([(s - t0).total_seconds() for s in stamps], dtype=np.float64)
    return times, prompts.clip(min=1), outputs.clip(min=1)


__all__ = ["DEFAULT_SLOS", "SLO", "TRACE_FILES", "Budget", "Workload"]
