"""Prometheus metrics with vLLM-like names under a `thunder:` prefix, on a private registry.

Who writes what:
- the HTTP server records each request's TTFT, TPOT, end-to-end latency and token counts from the stream
  it sends (`record_request`), so these are what clients saw minus the network;
- the backend (router, device actors) sets per-replica load gauges, per-replica token counters and KV
  bytes on the wire (`set_replica_load` / `update_from_state`, `record_prefill_tokens`, ...);
- windowed SLO attainment (DistServe: TTFT ≤ SLO and TPOT ≤ SLO) and goodput per $/h are computed at
  scrape time from the requests that finished in the last `window_s` seconds.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

if TYPE_CHECKING:
    from thunder.server.backend import BackendState

# Same bucket edges as vLLM's metrics so dashboards and comparisons carry over.
# fmt: off
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                40.0, 80.0)
E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
               480.0, 960.0, 1920.0, 7680.0)
# fmt: on
REPLICA = ("replica", "role")


class MetricsConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class SloTargets:
    """Per-request SLOs for attainment/goodput (DistServe's definition: a request is good iff both hold)."""

    ttft_s: float = 1.0
    tpot_s: float = 0.1
    window_s: float = 60.0

    def __post_init__(self) -> None:
        for name in ("ttft_s", "tpot_s", "window_s"):
            value = getattr(self, name)
            if not value > 0:
                raise MetricsConfigError(f"SloTargets.{name}={value}: must be > 0 seconds; try {name}=1.0")


class ServingMetrics:
    """All thunder metrics, owned by one private `CollectorRegistry` (two servers in one process never clash)."""

    def __init__(
        self,
        *,
        model_name: str,
        slo: SloTargets | None = None,
        usd_per_hour: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model_name = model_name
        self.slo = slo or SloTargets()
        self.registry = CollectorRegistry(auto_describe=True)
        self._clock = clock
        self._started = clock()
        self._usd_per_hour = usd_per_hour
        self._lock = threading.Lock()
        self._finished: deque[tuple[float, bool]] = deque()  # (finish time, met both SLOs)
        reg = self.registry
        model = ("model_name",)

        # --- per replica, set by the backend
        self.num_requests_running = Gauge(
            "thunder:num_requests_running", "Requests in a replica's running batch.", REPLICA, registry=reg
        )
        self.num_requests_waiting = Gauge(
            "thunder:num_requests_waiting", "Requests queued at a replica.", REPLICA, registry=reg
        )
        self.kv_cache_usage_perc = Gauge(
            "thunder:kv_cache_usage_perc",
            "Fraction of a replica's KV pages in use (1 = 100%).",
            REPLICA,
            registry=reg,
        )
        self.prefill_tokens = Counter(
            "thunder:prefill_tokens", "Prompt tokens prefilled by a replica.", REPLICA, registry=reg
        )
        self.decode_tokens = Counter(
            "thunder:decode_tokens", "Output tokens decoded by a replica.", REPLICA, registry=reg
        )
        self.kv_transfer_bytes = Counter(
            "thunder:kv_transfer_bytes",
            "KV-cache bytes sent prefill -> decode on the wire (after compression).",
            ("src_replica", "dst_replica"),
            registry=reg,
        )
        # --- per request, recorded by the HTTP server from the stream it sends
        self.time_to_first_token = Histogram(
            "thunder:time_to_first_token_seconds",
            "Arrival to first output token.",
            model,
            buckets=TTFT_BUCKETS,
            registry=reg,
        )
        self.time_per_output_token = Histogram(
            "thunder:time_per_output_token_seconds",
            "Per request: (e2e - ttft) / (output tokens - 1), for requests with > 1 output token.",
            model,
            buckets=TPOT_BUCKETS,
            registry=reg,
        )
        self.e2e_request_latency = Histogram(
            "thunder:e2e_request_latency_seconds",
            "Arrival to last output token.",
            model,
            buckets=E2E_BUCKETS,
            registry=reg,
        )
        self.prompt_tokens = Counter(
            "thunder:prompt_tokens", "Prompt tokens of finished requests.", model, registry=reg
        )
        self.generation_tokens = Counter(
            "thunder:generation_tokens", "Output tokens of finished requests.", model, registry=reg
        )
        self.request_success = Counter(
            "thunder:request_success",
            "Finished requests by finish reason.",
            ("model_name", "finished_reason"),
            registry=reg,
        )
        self.num_requests_in_flight = Gauge(
            "thunder:num_requests_in_flight", "HTTP generation requests being served.", model, registry=reg
        )
        self.http_errors = Counter(
            "thunder:http_errors", "Error responses by HTTP status.", ("status",), registry=reg
        )
        for family in (
            self.time_to_first_token,
            self.time_per_output_token,
            self.e2e_request_latency,
            self.prompt_tokens,
            self.generation_tokens,
            self.num_requests_in_flight,
        ):
            family.labels(model_name)  # NOTE: export zero-valued series from the start, as vLLM does
        # --- windowed SLO attainment and cost-normalised goodput, computed at scrape time
        window = f"over the last {self.slo.window_s:g} s"
        Gauge(
            "thunder:slo_attainment",
            f"Share of finished requests meeting TTFT<={self.slo.ttft_s:g}s and "
            f"TPOT<={self.slo.tpot_s:g}s {window} (NaN when none finished).",
            registry=reg,
        ).set_function(self.slo_attainment)
        Gauge(
            "thunder:goodput_requests_per_second",
            f"Requests meeting both SLOs per second {window}.",
            registry=reg,
        ).set_function(self.goodput_rps)
        Gauge(
            "thunder:goodput_per_usd_per_hour",
            "goodput_requests_per_second / cluster price in USD/h (NaN while the price is unknown).",
            registry=reg,
        ).set_function(self.goodput_per_usd_per_hour)
        Gauge(
            "thunder:cluster_usd_per_hour",
            "Price of the devices serving now, USD per hour.",
            registry=reg,
        ).set_function(lambda: self._usd_per_hour)

    # ------------------------------------------------------------ server side

    def record_request(
        self,
        *,
        ttft_s: float | None,
        e2e_s: float,
        num_prompt_tokens: int,
        num_output_tokens: int,
        finish_reason: str,
    ) -> None:
        """One finished request as its client saw it. `ttft_s` is None when no token was produced."""
        name = self.model_name
        self.e2e_request_latency.labels(name).observe(e2e_s)
        self.prompt_tokens.labels(name).inc(num_prompt_tokens)
        self.generation_tokens.labels(name).inc(num_output_tokens)
        self.request_success.labels(name, finish_reason).inc()
        tpot_s = 0.0  # NOTE: vLLM's goodput convention: a request with one output token has TPOT 0.
        if ttft_s is not None:
            self.time_to_first_token.labels(name).observe(ttft_s)
            if num_output_tokens > 1:
                tpot_s = (e2e_s - ttft_s) / (num_output_tokens - 1)
                self.time_per_output_token.labels(name).observe(tpot_s)
        good = ttft_s is not None and ttft_s <= self.slo.ttft_s and tpot_s <= self.slo.tpot_s
        with self._lock:
            self._finished.append((self._clock(), good))

    def record_http_error(self, status: int) -> None:
        self.http_errors.labels(str(status)).inc()

    # ----------------------------------------------------------- backend side

    def set_replica_load(
        self, replica: str, role: str, *, num_running: int, num_waiting: int, kv_cache_usage: float
    ) -> None:
        self.num_requests_running.labels(replica, role).set(num_running)
        self.num_requests_waiting.labels(replica, role).set(num_waiting)
        self.kv_cache_usage_perc.labels(replica, role).set(kv_cache_usage)

    def update_from_state(self, state: BackendState) -> None:
        """Replace all per-replica gauges with a backend snapshot (replicas that left or flipped role vanish)."""
        for gauge in (self.num_requests_running, self.num_requests_waiting, self.kv_cache_usage_perc):
            gauge.clear()
        for row in state.get("replicas", []):
            self.set_replica_load(
                row["replica"],
                row["role"],
                num_running=row["num_running"],
                num_waiting=row["num_waiting"],
                kv_cache_usage=row["kv_cache_usage"],
            )
        if "usd_per_hour" in state:
            self.set_usd_per_hour(state["usd_per_hour"])

    def record_prefill_tokens(self, replica: str, role: str, num_tokens: int) -> None:
        self.prefill_tokens.labels(replica, role).inc(num_tokens)

    def record_decode_tokens(self, replica: str, role: str, num_tokens: int) -> None:
        self.decode_tokens.labels(replica, role).inc(num_tokens)

    def record_kv_transfer(self, src_replica: str, dst_replica: str, num_bytes: int) -> None:
        self.kv_transfer_bytes.labels(src_replica, dst_replica).inc(num_bytes)

    def set_usd_per_hour(self, usd_per_hour: float) -> None:
        if usd_per_hour < 0:
            raise MetricsConfigError(f"usd_per_hour={usd_per_hour}: a price must be ≥ 0 (0 = unknown)")
        self._usd_per_hour = usd_per_hour

    # ------------------------------------------------------------- windowed

    def _window(self) -> tuple[int, int, float]:
        """(finished, good, seconds covered) over the SLO window, dropping older entries."""
        now = self._clock()
        horizon = now - self.slo.window_s
        with self._lock:
            while self._finished and self._finished[0][0] < horizon:
                self._finished.popleft()
            total = len(self._finished)
            good = sum(1 for _, ok in self._finished if ok)
        covered = min(self.slo.window_s, now - self._started)
        return total, good, covered

    def slo_attainment(self) -> float:
        total, good, _ = self._window()
        return good / total if total else math.nan

    def goodput_rps(self) -> float:
        _, good, covered = self._window()
        return good / covered if covered > 0 else 0.0

    def goodput_per_usd_per_hour(self) -> float:
        return self.goodput_rps() / self._usd_per_hour if self._usd_per_hour > 0 else math.nan

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type, for a `/metrics` response."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


__all__ = ["MetricsConfigError", "ServingMetrics", "SloTargets"]
