"""KV-handoff links of simulated devices: the plan's α-β link per group pair, transfers serialised per link.

No torch, no actors: `launch` reads the plan with `kv_links_of` in the main process, and each
`SimDeviceActor` times its outgoing handoffs with a `SimLinks`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from planner import Plan

__all__ = ["LinkSpec", "SimLinks", "kv_links_of"]

LinkSpec = tuple[float, float]
"""(bandwidth bytes/s, latency s) of a KV-handoff link; bandwidth may be ``math.inf``."""


def kv_links_of(plan: Plan, group: str) -> dict[str, LinkSpec]:
    """The plan's KV-handoff link from `group` to every other group, as `SimDeviceActor(kv_links=...)` wants."""
    links: dict[str, LinkSpec] = {}
    for g in plan.groups:
        link = plan.group_links.get((group, g.id) if group < g.id else (g.id, group))
        if g.id != group and link is not None:
            links[g.id] = (float(link.bandwidth), float(link.latency))
    return links


class SimLinks:
    """Outgoing KV links of one simulated device: α-β time, transfers on the same link one after another.

    `schedule(dst, nbytes, now)` returns the delay until the transfer has landed at `dst`: it starts when the
    link is free, occupies it for ``nbytes / bandwidth`` and lands ``latency`` later.
    """

    def __init__(self, links: Mapping[str, LinkSpec]) -> None:
        self.links = dict(links)
        self._free_at: dict[str, float] = {}
        self.bytes_sent: dict[str, int] = {}

    def schedule(self, dst: str, nbytes: int, now: float) -> float:
        bandwidth, latency = self.links.get(dst, (math.inf, 0.0))
        start = max(now, self._free_at.get(dst, now))
        self._free_at[dst] = start + nbytes / bandwidth
        self.bytes_sent[dst] = self.bytes_sent.get(dst, 0) + nbytes
        return self._free_at[dst] + latency - now
