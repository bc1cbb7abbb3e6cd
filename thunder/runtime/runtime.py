"""`Runtime`: a running deployment — the actor system, its router, sink and device actors, and the plan.

`Runtime` is what `ActorBackend` (the HTTP server's backend) and `AsyncLLM` drive: `submit` a request and
read its deltas from a queue, `abort`, `apply_plan` (new phases and ratios on the same devices: roles flip,
engines stay), `probe` (a real one-token generation through every replica), `shutdown`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import actors
from actors import ActorRef, ActorSystem
from thunder.runtime.cpu_policy import role_message
from thunder.runtime.messages import Abort, DeviceInfo, DeviceStats, Drain, Peers, Sampling
from thunder.runtime.router import GetRouterState, RoutingTable, SetDraining, SetKVTransfer, SetTable, Submit
from thunder.runtime.streams import StreamFailed, StreamTable

if TYPE_CHECKING:
    from planner import Plan
    from thunder.models import Tokenizer
    from thunder.runtime.config import RuntimeConfig
    from thunder.runtime.cpu_policy import CpuShare
    from thunder.runtime.sink import LiveState
    from thunder.server.backend import TokenDelta

__all__ = ["Runtime", "routing_table"]

log = logging.getLogger(__name__)
_probe_ids = itertools.count()


def routing_table(plan: Plan, devices: dict[str, ActorRef]) -> RoutingTable:
    """The router's table for `plan`, addressing each group by its leader device actor."""
    return RoutingTable(
        devices={g.id: devices[g.id] for g in plan.groups},
        roles={g.id: g.phase for g in plan.groups},
        arrival={g: float(w) for g, w in plan.routing.arrival.items()},
        handoff={p: {d: float(w) for d, w in row.items()} for p, row in plan.routing.handoff.items()},
    )


@dataclass(slots=True, kw_only=True, eq=False)
class Runtime:
    config: RuntimeConfig
    system: ActorSystem
    plan: Plan
    router: ActorRef
    sink: ActorRef
    devices: dict[str, ActorRef]
    infos: dict[str, DeviceInfo]
    streams: StreamTable
    live: LiveState
    tokenizer: Tokenizer
    model_name: str
    max_model_len: int
    ready: bool = False
    closed: bool = False
    cpu_shares: Callable[[Plan], dict[str, CpuShare]] | None = None
    """Each device's CPU share under a plan (`cpu_policy.plan_shares`); None: leave threads as they are."""

    # -- requests ----------------------------------------------------------------------------------------------
    def submit(
        self,
        request_id: str,
        prompt_token_ids: list[int],
        sampling: Sampling,
        pin: tuple[str, str | None] | None = None,
    ) -> asyncio.Queue[TokenDelta | StreamFailed]:
        """Admit a request; its `TokenDelta`s (or a `StreamFailed`) arrive on the returned queue.

        Raises `actors.Overloaded` when the router's mailbox is full (nothing was admitted then), and
        RuntimeError after `shutdown`.
        """
        if self.closed:
            raise RuntimeError("this runtime is shut down; start a new one to generate")
        queue = self.streams.open(request_id)
        try:
            self.router.try_tell(
                Submit(request_id=request_id, prompt_token_ids=prompt_token_ids, sampling=sampling, pin=pin)
            )
        except actors.ActorError:
            self.streams.close(request_id)
            raise
        return queue

    async def abort(self, request_id: str) -> None:
        """Stop a request wherever it is (its pages are freed); its stream is closed at once."""
        self.streams.close(request_id)
        if not self.closed:
            await self.router.tell(Abort([request_id]))

    async def run_to_end(self, queue: asyncio.Queue[TokenDelta | StreamFailed]) -> list[TokenDelta]:
        out: list[TokenDelta] = []
        while True:
            item = await queue.get()
            if isinstance(item, StreamFailed):
                raise item
            out.append(item)
            if item.finished:
                return out

    # -- control -----------------------------------------------------------------------------------------------
    async def probe(self, timeout_s: float = 300.0) -> None:
        """A real generation through every replica: each prefill hands off to a decode replica (every decode
        replica is covered) and each colocated replica generates one token. Sets `ready`."""
        prefill = [g.id for g in self.plan.groups if g.phase == "prefill"]
        decode = [g.id for g in self.plan.groups if g.phase == "decode"]
        pins: list[tuple[str, str | None]] = [
            (g.id, None) for g in self.plan.groups if g.phase == "colocated"
        ]
        if prefill and decode:
            pins += [
                (prefill[i % len(prefill)], decode[i % len(decode)])
                for i in range(max(len(prefill), len(decode)))
            ]
        prompt = self.tokenizer.encode("Hello")
        queues = []
        for pin in pins:
            sampling = Sampling(max_tokens=1 if pin[1] is None else 2, temperature=0.0, ignore_eos=True)
            queues.append(self.submit(f"probe-{next(_probe_ids)}", prompt, sampling, pin=pin))
        async with asyncio.timeout(timeout_s):
            await asyncio.gather(*(self.run_to_end(q) for q in queues))
        self.ready = True

    async def apply_plan(self, plan: Plan) -> None:
        """Serve `plan` on the same devices: flip roles (`SetRole`, engines stay) and swap the routing table.

        `plan` must keep this runtime's groups (ids and devices); only phases and ratios may change.
        """
        missing = {g.id for g in plan.groups} - set(self.devices)
        if missing:
            raise ValueError(
                f"plan groups {sorted(missing)} have no device actor; only phases and ratios may change"
            )
        shares = self.cpu_shares(plan) if self.cpu_shares is not None else {}
        for g in plan.groups:
            # NOTE: a device's threads follow its new role; a priority once lowered (prefill_nice) stays lowered
            await self.devices[g.id].ask(role_message(g.phase, g.id, shares.get(g.device_ids[0])))
        self.plan = plan
        await self.link_peers()
        await self.router.ask(SetTable(routing_table(plan, self.devices)))

    async def link_peers(self) -> None:
        """Let every prefill device dial every decode device, so KV goes device to device (not relayed)."""
        decode = [self.infos[g.id] for g in self.plan.groups if g.phase == "decode"]
        peers = [(i.node_id, i.address[0], i.address[1]) for i in decode if i.address is not None]
        if not peers:
            return
        for g in self.plan.groups:
            if g.phase == "prefill" and self.infos[g.id].address is not None:
                await self.devices[g.id].ask(Peers(peers), timeout=30.0)

    async def drain(self, replica: str, timeout_s: float = 60.0) -> DeviceStats:
        """Route nothing new to `replica` and wait until it holds no request; returns its stats then.

        Undo with `undrain`. The device keeps its engine (weights, KV pool) throughout.
        """
        await self.router.ask(SetDraining(replica, True))
        stats: DeviceStats = await self.devices[replica].ask(Drain(timeout_s), timeout=timeout_s + 5.0)
        return stats

    async def undrain(self, replica: str) -> None:
        await self.router.ask(SetDraining(replica, False))

    async def set_kv_transfer_dtype(self, dtype: str, group_size: int | None = None) -> str:
        """Wire format for the next handoffs; returns the previous one."""
        previous: str = await self.router.ask(SetKVTransfer(dtype, group_size or self.config.kv_group_size))
        return previous

    async def router_state(self) -> dict[str, Any]:
        state: dict[str, Any] = await self.router.ask(GetRouterState())
        return state

    async def shutdown(self) -> None:
        """Stop every actor and child process (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self.ready = False
        self.streams.fail_all("the server is shutting down")
        await self.system.shutdown()
