"""`Router` actor (main process): sends each request to a prefill (or colocated) replica and picks the decode
replica its KV goes to, by the plan's routing ratios (smooth weighted round-robin over x0i, then over xij).

A replica whose queue predicts an SLO miss is skipped (when every candidate would miss, the least loaded one
takes the request: nothing accepted is dropped). Aborts go to every device that may hold the request, so its
pages are freed wherever it is. `RouterState` is what `/metrics` and `Backend.state()` read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from actors import Actor, ActorError, ActorRef, handler
from thunder.runtime.messages import Abort, Admit, DeviceStats, Sampling
from thunder.runtime.routing import ReplicaLoad, SloTargets, SmoothWRR, least_loaded
from thunder.runtime.streams import StreamTable

__all__ = [
    "GetRouterState",
    "Progress",
    "Router",
    "RoutingTable",
    "SetDraining",
    "SetKVTransfer",
    "SetTable",
    "Submit",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutingTable:
    """Replicas by id (leader device ref + role) and the plan's ratios.

    `arrival[g]`: share of arrivals for prefill/colocated replica g. `handoff[p][d]`: share of p's requests
    whose KV goes to decode replica d.
    """

    devices: dict[str, ActorRef]
    roles: dict[str, str]
    arrival: dict[str, float]
    handoff: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Submit:
    """In-process ingress. `pin=(replica, decode replica or None)` bypasses the ratios (readiness probes)."""

    request_id: str
    prompt_token_ids: list[int]
    sampling: Sampling
    pin: tuple[str, str | None] | None = None


@dataclass(frozen=True, slots=True)
class SetTable:
    table: RoutingTable


@dataclass(frozen=True, slots=True)
class SetKVTransfer:
    dtype: str
    group_size: int = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    """What the sink learned from one step report (in-process, sink -> router)."""

    stats: DeviceStats
    step_s: float
    prefill_tokens: int
    decode_tokens: int
    first_token_ids: list[str]
    finished_ids: list[str]


@dataclass(frozen=True, slots=True)
class GetRouterState:
    pass


@dataclass(frozen=True, slots=True)
class SetDraining:
    """Stop (or resume) routing new requests to `replica`; what it holds finishes normally."""

    replica: str
    draining: bool = True


@dataclass(slots=True)
class _Placement:
    prefill: str
    decode: str | None
    prompt_tokens: int
    first_token_seen: bool = False


class Router(Actor):
    def __init__(
        self,
        *,
        slo: SloTargets,
        streams: StreamTable,
        kv_transfer_dtype: str = "int4",
        kv_group_size: int = 64,
    ) -> None:
        self.slo = slo
        self.streams = streams
        self.kv_dtype = kv_transfer_dtype
        self.kv_group_size = kv_group_size
        self.table = RoutingTable(devices={}, roles={}, arrival={})
        self.loads: dict[str, ReplicaLoad] = {}
        self._arrivals = SmoothWRR({})
        self._handoffs: dict[str, SmoothWRR] = {}
        self._placements: dict[str, _Placement] = {}
        self.skipped = 0  # requests that skipped their first-choice replica for a predicted SLO miss

    # -- configuration -----------------------------------------------------------------------------------------
    @handler
    def set_table(self, msg: SetTable) -> None:
        t = msg.table
        self.table = t
        self.loads = {g: self.loads.get(g) or ReplicaLoad(g, role) for g, role in t.roles.items()}
        for g, role in t.roles.items():
            self.loads[g].role = role
        self._arrivals = SmoothWRR(t.arrival)
        self._handoffs = {p: SmoothWRR(row) for p, row in t.handoff.items()}

    @handler
    def set_draining(self, msg: SetDraining) -> None:
        if msg.replica not in self.loads:
            raise ValueError(f"SetDraining: no replica {msg.replica!r}; replicas: {sorted(self.loads)}")
        self.loads[msg.replica].draining = msg.draining

    @handler
    def set_kv_transfer(self, msg: SetKVTransfer) -> str:
        previous, self.kv_dtype, self.kv_group_size = self.kv_dtype, msg.dtype, msg.group_size
        return previous

    # -- requests ----------------------------------------------------------------------------------------------
    @handler
    async def submit(self, msg: Submit) -> None:
        n = len(msg.prompt_token_ids)
        first, decode = msg.pin if msg.pin is not None else (self._pick_first(n), None)
        if first is None:
            raise ActorError("routing table has no replica taking arrivals; set a plan first")
        if msg.pin is None and self.table.roles.get(first) == "prefill":
            decode = self._pick_decode(first, n)
        placement = _Placement(first, decode, n)
        self._placements[msg.request_id] = placement
        self.loads[first].queued_prompt_tokens += n
        handoff_to = self.table.devices[decode] if decode is not None else None
        admit = Admit(
            request_id=msg.request_id,
            prompt_token_ids=msg.prompt_token_ids,
            sampling=msg.sampling,
            handoff_to=handoff_to,
            handoff_replica=decode or "",
            kv_dtype=self.kv_dtype,
            kv_group_size=self.kv_group_size,
        )
        try:
            await self.table.devices[first].tell(admit)
        except ActorError as exc:  # the device died: fail this request, keep routing the others
            log.warning("admitting %s on %s failed: %s", msg.request_id, first, exc)
            self._forget(self._placements.pop(msg.request_id))
            self.streams.fail(msg.request_id, f"replica {first} is unavailable: {exc}")

    def _pick_first(self, n: int) -> str | None:
        def colocated(g: str) -> bool:
            return self.table.roles[g] == "colocated"

        now = self.system.loop.time()
        choice = self._arrivals.pick(
            lambda g: not self.loads[g].would_miss(self.slo, n, decoding=colocated(g), now=now)
        )
        if choice is None:
            self.skipped += 1
            live = [g for g, w in self._arrivals.weights.items() if w > 0 and not self.loads[g].draining]
            best = min(live, key=lambda g: self.loads[g].score(n, decoding=colocated(g)), default=None)
            choice = best if best is not None else self._arrivals.pick()
        return choice

    def _pick_decode(self, prefill: str, n: int) -> str | None:
        wrr = self._handoffs.get(prefill)
        if wrr is None:
            return None
        now = self.system.loop.time()
        choice = wrr.pick(lambda d: not self.loads[d].would_miss(self.slo, n, decoding=True, now=now))
        if choice is None:
            self.skipped += 1
            best = least_loaded([self.loads[d] for d in wrr.weights if wrr.weights[d] > 0], n, decoding=True)
            choice = best.replica if best is not None else wrr.pick()
        return choice

    @handler
    async def abort(self, msg: Abort) -> None:
        targets: dict[str, list[str]] = {}
        for rid in msg.request_ids:
            p = self._placements.pop(rid, None)
            if p is None:
                continue
            self._forget(p)
            for g in (p.prefill, p.decode):
                if g is not None:
                    targets.setdefault(g, []).append(rid)
        for g, rids in targets.items():
            try:
                await self.table.devices[g].tell(Abort(rids))
            except ActorError as exc:
                log.warning("abort of %s on %s failed: %s", rids, g, exc)

    @handler
    def on_progress(self, msg: Progress) -> None:
        load = self.loads.get(msg.stats.replica)
        if load is not None:
            load.observe(msg.stats, msg.step_s, msg.prefill_tokens, msg.decode_tokens, now=self.system.loop.time())
        for rid in msg.first_token_ids:
            p = self._placements.get(rid)
            if p is not None and not p.first_token_seen:
                p.first_token_seen = True
                self.loads[p.prefill].queued_prompt_tokens -= p.prompt_tokens
                self.loads[p.decode or p.prefill].active += 1
        for rid in msg.finished_ids:
            p = self._placements.pop(rid, None)
            if p is not None:
                self._forget(p)

    def _forget(self, p: _Placement) -> None:
        if not p.first_token_seen:
            self.loads[p.prefill].queued_prompt_tokens -= p.prompt_tokens
        else:
            self.loads[p.decode or p.prefill].active -= 1

    @handler
    def state(self, msg: GetRouterState) -> dict[str, Any]:
        return {
            "in_flight": len(self._placements),
            "skipped_for_slo": self.skipped,
            "kv_transfer_dtype": self.kv_dtype,
            "replicas": {
                g: {
                    "role": x.role,
                    "queued_prompt_tokens": x.queued_prompt_tokens,
                    "active": x.active,
                    "sec_per_prefill_token": x.sec_per_prefill_token,
                    "decode_step_s": x.decode_step_s,
                    "draining": x.draining,
                }
                for g, x in self.loads.items()
            },
        }
