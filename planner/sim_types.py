"""Inputs of the discrete-event simulator: replica timing protocol, replicas, topology, request sets.

The simulator's event core only needs four things per replica (prefill time for a batch of prompt lengths,
decode step time, KV capacity, a role) plus the prefill→decode link of each pair. Everything else (how those
numbers are derived from GPUs, TP/PP and the model) lives in the cost model; `planner.simulate` adapts a Plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np

Role = Literal["prefill", "decode", "colocated"]
ROLES: tuple[str, ...] = ("prefill", "decode", "colocated")


class SimConfigError(ValueError):
    """A simulator input is malformed; the message names the value and the fix."""


@runtime_checkable
class ReplicaPerf(Protocol):
    """Step times of one model replica (one group of devices holding a full model copy)."""

    def prefill_time(self, prompt_lens: Sequence[int]) -> tuple[float, float]:
        """(latency, issue interval) in seconds for one prefill batch of these prompt lengths.

        latency: batch start → last token of the batch leaves the last pipeline stage.
        interval: batch start → the first stage can take the next batch (= latency without PP pipelining).
        """
        ...

    def decode_step_time(self, batch_size: int, context_tokens: int) -> float:
        """Seconds for one decode step producing one token for each of `batch_size` sequences.

        context_tokens: total KV tokens the step attends over (sum over the batch).
        """
        ...

    @property
    def kv_capacity_tokens(self) -> int:
        """KV-cache tokens the replica can hold at once (after weights and activations)."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class AffinePerf:
    """A replica whose step times are affine in tokens: the shape a roofline model takes once it is linearised.

    prefill latency = prefill_base_s + prefill_per_token_s * Σ prompt tokens; interval = latency / pipeline_depth
    decode step = decode_base_s + decode_per_seq_s * batch + decode_per_ctx_token_s * context tokens.
    Used for known-answer tests (M/D/1, saturation) and for profiles fitted from a real engine.
    """

    prefill_base_s: float
    prefill_per_token_s: float
    decode_base_s: float
    decode_per_seq_s: float = 0.0
    decode_per_ctx_token_s: float = 0.0
    kv_tokens: int = 1 << 30
    pipeline_depth: int = 1

    def prefill_time(self, prompt_lens: Sequence[int]) -> tuple[float, float]:
        latency = self.prefill_base_s + self.prefill_per_token_s * float(sum(prompt_lens))
        return latency, latency / self.pipeline_depth

    def decode_step_time(self, batch_size: int, context_tokens: int) -> float:
        return (
            self.decode_base_s
            + self.decode_per_seq_s * batch_size
            + self.decode_per_ctx_token_s * context_tokens
        )

    @property
    def kv_capacity_tokens(self) -> int:
        return self.kv_tokens


@dataclass(frozen=True, slots=True, kw_only=True)
class SimReplica:
    """One replica as the simulator sees it. Batching limits follow vLLM's scheduler knobs."""

    name: str
    role: Role
    perf: ReplicaPerf
    max_batch_tokens: int = 8192  # prefill token budget per iteration (vLLM max_num_batched_tokens)
    max_batch_size: int = 256  # resident sequences decoded together (vLLM max_num_seqs)

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise SimConfigError(f"replica {self.name!r}: role={self.role!r}; use one of {ROLES}")
        if self.max_batch_tokens < 1 or self.max_batch_size < 1:
            raise SimConfigError(
                f"replica {self.name!r}: max_batch_tokens={self.max_batch_tokens}, "
                f"max_batch_size={self.max_batch_size}; both must be ≥ 1 (try 8192 and 256)"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class SimTopology:
    """Replicas plus routing and the prefill→decode links.

    entry_ratios: float[R], share of arrivals sent to each replica (non-zero only on prefill/colocated), sums to 1.
    pair_ratios: float[R, R], row i = how replica i's finished prefills split over decode replicas (rows of
        prefill replicas sum to 1; other rows are ignored).
    link_latency_s, link_bandwidth_Bps: float[R, R], α and β of the KV path i→j; transfers on one pair serialize.
    kv_wire_bytes_per_token: KV bytes per prompt token on the wire (after compression).
    """

    replicas: tuple[SimReplica, ...]
    entry_ratios: np.ndarray
    pair_ratios: np.ndarray
    link_latency_s: np.ndarray
    link_bandwidth_Bps: np.ndarray
    kv_wire_bytes_per_token: float
    cost_per_hour: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        r = len(self.replicas)
        if r == 0:
            raise SimConfigError("topology has no replicas; give at least one colocated or prefill+decode pair")
        for name in ("pair_ratios", "link_latency_s", "link_bandwidth_Bps"):
            if np.shape(getattr(self, name)) != (r, r):
                raise SimConfigError(f"{name} has shape {np.shape(getattr(self, name))}; expected ({r}, {r})")
        entry = np.asarray(self.entry_ratios, dtype=float)
        if entry.shape != (r,) or np.any(entry < 0) or not np.isclose(entry.sum(), 1.0):
            raise SimConfigError(f"entry_ratios={entry.tolist()}: need {r} non-negative shares summing to 1")
        roles = [rep.role for rep in self.replicas]
        for i, rep in enumerate(self.replicas):
            if entry[i] > 0 and rep.role == "decode":
                raise SimConfigError(f"entry_ratios[{i}]={entry[i]} routes arrivals to decode replica {rep.name!r}")
            if rep.role == "prefill" and entry[i] > 0:
                row = np.asarray(self.pair_ratios[i], dtype=float)
                to_non_decode = [roles[j] for j in np.nonzero(row > 0)[0] if roles[j] != "decode"]
                if not np.isclose(row.sum(), 1.0) or np.any(row < 0) or to_non_decode:
                    raise SimConfigError(
                        f"pair_ratios row of prefill replica {rep.name!r} = {row.tolist()}: "
                        "need non-negative shares over decode replicas summing to 1"
                    )
        if self.kv_wire_bytes_per_token < 0:
            raise SimConfigError(f"kv_wire_bytes_per_token={self.kv_wire_bytes_per_token}; must be ≥ 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class Requests:
    """A request set: arrival times (s, ascending), prompt and output lengths (tokens, ≥ 1). Shapes [N]."""

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.arrival_s)
        if len(self.prompt_tokens) != n or len(self.output_tokens) != n:
            raise SimConfigError("arrival_s, prompt_tokens and output_tokens must have the same length")
        if n and (np.any(np.diff(self.arrival_s) < 0)):
            raise SimConfigError("arrival_s must be sorted ascending; sort the trace by timestamp first")
        if n and (self.prompt_tokens.min() < 1 or self.output_tokens.min() < 1):
            raise SimConfigError("prompt_tokens and output_tokens must be ≥ 1; drop empty rows from the trace")

    def __len__(self) -> int:
        return len(self.arrival_s)


def poisson_requests(
    rate: float, prompt_tokens: np.ndarray, output_tokens: np.ndarray, *, n: int, seed: int = 0
) -> Requests:
    """`n` requests with Poisson arrivals at `rate` req/s; lengths drawn jointly (row-wise) from the given pairs."""
    if rate <= 0:
        raise SimConfigError(f"rate={rate}: must be > 0 requests/s")
    if n < 1:
        raise SimConfigError(f"n={n}: must be ≥ 1 request")
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0 / rate, size=n)
    rows = rng.integers(0, len(prompt_tokens), size=n)
    return Requests(
        arrival_s=np.cumsum(gaps) - gaps[0],
        prompt_tokens=np.asarray(prompt_tokens, dtype=np.int64)[rows],
        output_tokens=np.asarray(output_tokens, dtype=np.int64)[rows],
    )
