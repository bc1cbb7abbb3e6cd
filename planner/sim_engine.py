"""The discrete-event core: continuous batching per replica, prefill→decode KV transfer, queueing.

Model of each replica (vLLM-like scheduler, one iteration at a time):
- prefill: takes waiting prompts FIFO under a token budget and its KV capacity; the batch ends after the
  cost model's latency, the next batch may start after its issue interval (PP pipelining). The first token is
  emitted at the end of prefill; the prompt's KV stays resident until it has been sent to the decode replica.
- decode: pulls requests from its pending queue when it can reserve prompt+output KV tokens (DistServe's pull
  model), the transfer runs on the i→j link (α + bytes/β, serialised per link), then the request joins the next
  step; each step produces one token for every resident sequence.
- colocated: vLLM v0 prefill priority: a prefill batch when a waiting prompt fits, else a decode step. The next
  prefill batch may enter the pipeline after the bottleneck stage (PP pipelining), but a decode step cannot finish
  before the prefill passes ahead of it have left the last stage: its micro-batches queue behind them stage by
  stage, so every running sequence's next token waits for the whole pass (with PP = 1 the two are the same).

Routing follows the topology's ratios with smooth weighted round-robin (deterministic, low variance).
"""

from __future__ import annotations

import heapq
from collections import deque

import numpy as np

from planner.sim_metrics import SimResult
from planner.sim_types import Requests, SimTopology

_FREE, _PREFILL_DONE, _STEP_DONE, _XFER_DONE = 0, 1, 2, 3


def smooth_wrr(weights: np.ndarray, n: int) -> np.ndarray:
    """Pick `n` indices with nginx's smooth weighted round-robin over non-negative `weights` (float[R])."""
    w = np.asarray(weights, dtype=float)
    total = w.sum()
    if n == 0 or total <= 0:
        return np.zeros(n, dtype=np.int64)
    current = np.zeros_like(w)
    out = np.empty(n, dtype=np.int64)
    for k in range(n):
        current += w
        pick = int(np.argmax(current))
        current[pick] -= total
        out[k] = pick
    return out


class _Replica:
    __slots__ = (
        "idx", "role", "perf", "cap", "max_tokens", "max_batch", "busy", "kv_used", "waiting", "pending",
        "joining", "running", "n_running", "ctx_base", "step", "inflight", "clear_at",
    )

    def __init__(self, idx: int, spec) -> None:  # type: ignore[no-untyped-def]
        self.idx = idx
        self.role = spec.role
        self.perf = spec.perf
        self.cap = int(spec.perf.kv_capacity_tokens)
        self.max_tokens = spec.max_batch_tokens
        self.max_batch = spec.max_batch_size
        self.busy = False
        self.kv_used = 0
        self.waiting: deque[int] = deque()  # prompts not yet prefilled (prefill / colocated)
        self.pending: deque[int] = deque()  # prefilled elsewhere, waiting for KV room here (decode)
        self.joining: list[int] = []  # ready to join the next decode step
        self.running: list[tuple[int, int]] = []  # heap of (finish step, request)
        self.n_running = 0
        self.ctx_base = 0  # Σ (prompt + 1 − join step) over running; context = ctx_base + n_running * step
        self.step = 0
        self.inflight = 0  # KV transfers reserved here but not yet landed
        self.clear_at = 0.0  # colocated: when the last prefill pass started so far leaves the pipeline


class _Simulation:
    def __init__(self, topo: SimTopology, reqs: Requests) -> None:
        self.topo = topo
        self.arrival = np.asarray(reqs.arrival_s, dtype=float)
        self.prompt = np.asarray(reqs.prompt_tokens, dtype=np.int64).tolist()
        self.out = np.asarray(reqs.output_tokens, dtype=np.int64).tolist()
        n = len(reqs)
        self.first = np.full(n, np.inf)
        self.finish = np.full(n, np.inf)
        self.join_step = [0] * n
        self.reps = [_Replica(i, spec) for i, spec in enumerate(topo.replicas)]
        self.entry = smooth_wrr(topo.entry_ratios, n).tolist()
        self.decode = self._decode_targets(n)
        self.link_free = np.zeros_like(np.asarray(topo.link_latency_s, dtype=float))
        self.kv_bytes = float(topo.kv_wire_bytes_per_token)
        self.events: list[tuple[float, int, int, int, object]] = []
        self.seq = 0

    def _decode_targets(self, n: int) -> list[int]:
        targets = [-1] * n
        entry = np.asarray(self.entry)
        for i, rep in enumerate(self.reps):
            if rep.role != "prefill":
                continue
            mine = np.nonzero(entry == i)[0]
            picks = smooth_wrr(self.topo.pair_ratios[i], len(mine))
            for r, j in zip(mine.tolist(), picks.tolist(), strict=True):
                targets[r] = j
        return targets

    def push(self, t: float, kind: int, rep: int, payload: object = None) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, self.seq, kind, rep, payload))

    def run(self) -> None:
        n, k = len(self.arrival), 0
        events = self.events
        while k < n or events:
            if k < n and (not events or self.arrival[k] <= events[0][0]):
                now = float(self.arrival[k])
                rep = self.reps[self.entry[k]]
                rep.waiting.append(k)
                k += 1
                self.kick(rep, now)
                continue
            now, _, kind, idx, payload = heapq.heappop(events)
            rep = self.reps[idx]
            if kind == _FREE:
                rep.busy = False
                self.kick(rep, now)
            elif kind == _PREFILL_DONE:
                self.prefill_done(rep, payload, now)  # type: ignore[arg-type]
            elif kind == _STEP_DONE:
                self.step_done(rep, now)
            else:
                self.transfer_done(rep, payload, now)  # type: ignore[arg-type]

    # --- iteration scheduling -------------------------------------------------------------------------
    def kick(self, rep: _Replica, now: float) -> None:
        if rep.busy:
            return
        if rep.role != "decode" and rep.waiting and self.start_prefill(rep, now):
            return
        if rep.role != "prefill":
            self.start_decode_step(rep, now)

    def start_prefill(self, rep: _Replica, now: float) -> bool:
        colocated = rep.role == "colocated"
        batch: list[int] = []
        tokens = 0
        while rep.waiting:
            r = rep.waiting[0]
            p = self.prompt[r]
            need = p + self.out[r] if colocated else p
            if need > rep.cap:  # NOTE: can never fit on this replica; counted as a failed request.
                rep.waiting.popleft()
                continue
            if batch and tokens + p > rep.max_tokens:
                break
            if rep.kv_used + need > rep.cap:
                break
            if colocated and rep.n_running + len(rep.joining) + len(batch) >= rep.max_batch:
                break
            rep.waiting.popleft()
            rep.kv_used += need
            batch.append(r)
            tokens += p
        if not batch:
            return False
        latency, interval = rep.perf.prefill_time([self.prompt[r] for r in batch])
        rep.busy = True
        if colocated:
            rep.clear_at = max(rep.clear_at, now + latency)
        self.push(now + latency, _PREFILL_DONE, rep.idx, batch)
        self.push(now + min(interval, latency), _FREE, rep.idx)
        return True

    def start_decode_step(self, rep: _Replica, now: float) -> None:
        if rep.joining:
            for r in rep.joining:
                self.join_step[r] = rep.step
                heapq.heappush(rep.running, (rep.step + self.out[r] - 1, r))
                rep.ctx_base += self.prompt[r] + 1 - rep.step
            rep.n_running += len(rep.joining)
            rep.joining.clear()
        if rep.n_running == 0:
            return
        context = rep.ctx_base + rep.n_running * rep.step
        rep.busy = True
        done = max(now + rep.perf.decode_step_time(rep.n_running, context), rep.clear_at)
        self.push(done, _STEP_DONE, rep.idx)

    # --- completions ----------------------------------------------------------------------------------
    def prefill_done(self, rep: _Replica, batch: list[int], now: float) -> None:
        for r in batch:
            self.first[r] = now
            if self.out[r] == 1:
                self.finish[r] = now
                rep.kv_used -= self.prompt[r] + (1 if rep.role == "colocated" else 0)
            elif rep.role == "colocated":
                rep.joining.append(r)
            else:
                dst = self.reps[self.decode[r]]
                dst.pending.append(r)
                self.admit(dst, now)
        self.kick(rep, now)

    def admit(self, rep: _Replica, now: float) -> None:
        """Reserve KV on decode replica `rep` for pending requests in FIFO order and start their transfers."""
        while rep.pending:
            r = rep.pending[0]
            need = self.prompt[r] + self.out[r]
            src = self.reps[self.entry[r]]
            if need > rep.cap:  # NOTE: can never fit; the request fails and frees its prefill KV.
                rep.pending.popleft()
                src.kv_used -= self.prompt[r]
                self.kick(src, now)
                continue
            if rep.kv_used + need > rep.cap or rep.n_running + len(rep.joining) + rep.inflight >= rep.max_batch:
                return
            rep.pending.popleft()
            rep.kv_used += need
            rep.inflight += 1
            i, j = src.idx, rep.idx
            start = max(now, float(self.link_free[i, j]))
            done = start + float(self.topo.link_latency_s[i, j])
            done += self.prompt[r] * self.kv_bytes / float(self.topo.link_bandwidth_Bps[i, j])
            self.link_free[i, j] = done
            self.push(done, _XFER_DONE, j, r)

    def transfer_done(self, rep: _Replica, r: int, now: float) -> None:
        rep.inflight -= 1
        rep.joining.append(r)
        src = self.reps[self.entry[r]]
        src.kv_used -= self.prompt[r]
        self.kick(src, now)
        self.kick(rep, now)

    def step_done(self, rep: _Replica, now: float) -> None:
        rep.step += 1
        running = rep.running
        while running and running[0][0] <= rep.step:
            _, r = heapq.heappop(running)
            self.finish[r] = now
            rep.n_running -= 1
            rep.ctx_base -= self.prompt[r] + 1 - self.join_step[r]
            rep.kv_used -= self.prompt[r] + self.out[r]
        rep.busy = False
        if rep.role == "decode":
            self.admit(rep, now)
        self.kick(rep, now)


def simulate_topology(topo: SimTopology, reqs: Requests) -> SimResult:
    """Replay `reqs` through `topo` and return per-request latencies (deterministic for fixed inputs)."""
    sim = _Simulation(topo, reqs)
    sim.run()
    return SimResult(
        arrival_s=sim.arrival,
        first_token_s=sim.first,
        finish_s=sim.finish,
        prompt_tokens=np.asarray(reqs.prompt_tokens, dtype=np.int64),
        output_tokens=np.asarray(reqs.output_tokens, dtype=np.int64),
        cost_per_hour=topo.cost_per_hour,
    )
