"""`Sink` actor (main process): receives every device's `StepReport` (one per engine step), feeds the client
streams, counts prefill/decode tokens and KV bytes on the wire, keeps the latest load per replica, tells the
router what progressed, and relays KV handoffs between nodes that have no direct link.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from actors import Actor, ActorError, ActorRef, handler
from thunder.runtime.messages import DeviceStats, RelayHandoff, StepReport
from thunder.runtime.router import Progress
from thunder.runtime.streams import StreamTable

if TYPE_CHECKING:
    from thunder.metrics import ServingMetrics

__all__ = ["LiveState", "Sink"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class LiveState:
    """Latest numbers per replica, shared in-process with the backend (read by `/metrics` and `state()`)."""

    stats: dict[str, DeviceStats] = field(default_factory=dict)
    prefill_tokens: dict[str, int] = field(default_factory=dict)
    decode_tokens: dict[str, int] = field(default_factory=dict)
    kv_wire_bytes: int = 0
    kv_fp16_bytes: int = 0
    """What the same handoffs would have cost in fp16 (the compression baseline)."""
    handoffs: int = 0
    relayed_handoffs: int = 0


class Sink(Actor):
    def __init__(
        self,
        *,
        streams: StreamTable,
        live: LiveState,
        router: ActorRef | None = None,
        metrics: ServingMetrics | None = None,
    ) -> None:
        self.streams = streams
        self.live = live
        self.router = router
        self.metrics = metrics

    @handler
    async def report(self, msg: StepReport) -> None:
        first: list[str] = []
        finished: list[str] = []
        for delta in msg.deltas:
            if delta.start == 0 and delta.token_ids:
                first.append(delta.request_id)
            if delta.finished:
                finished.append(delta.request_id)
            self.streams.deliver(delta)
        self._account(msg)
        if self.router is not None:
            await self.router.tell(
                Progress(
                    stats=msg.stats,
                    step_s=msg.step_s,
                    prefill_tokens=msg.prefill_tokens,
                    decode_tokens=msg.decode_tokens,
                    first_token_ids=first,
                    finished_ids=finished,
                )
            )

    def _account(self, msg: StepReport) -> None:
        live, g, role = self.live, msg.replica, msg.stats.role
        live.stats[g] = msg.stats
        live.prefill_tokens[g] = live.prefill_tokens.get(g, 0) + msg.prefill_tokens
        live.decode_tokens[g] = live.decode_tokens.get(g, 0) + msg.decode_tokens
        for h in msg.handoffs:
            live.kv_wire_bytes += h.wire_nbytes
            live.kv_fp16_bytes += h.fp16_nbytes
            live.handoffs += 1
        if self.metrics is None:
            return
        if msg.prefill_tokens:
            self.metrics.record_prefill_tokens(g, role, msg.prefill_tokens)
        if msg.decode_tokens:
            self.metrics.record_decode_tokens(g, role, msg.decode_tokens)
        for h in msg.handoffs:
            self.metrics.record_kv_transfer(g, h.dst_replica, h.wire_nbytes)

    @handler
    async def relay(self, msg: RelayHandoff) -> None:
        self.live.relayed_handoffs += 1
        try:
            await msg.target.tell(msg.handoff)
        except ActorError as exc:
            log.warning("relaying the KV of %s failed: %s", msg.handoff.request_id, exc)
            self.streams.fail(msg.handoff.request_id, f"KV handoff failed: {exc}")
