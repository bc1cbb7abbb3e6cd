"""Analytical plan score: SLO attainment, throughput and capacity of a (grouping, phases, routing) at a rate.

attainment = Σ_ij (x_ij/λ) · mean_r[ TTFT_i(r) <= ttft_slo  and  TPOT_ij(r) <= tpot_slo ]
    TTFT_i(r)  = W_i(λ_i) + prefill latency_i(r)                       (M/G/1 wait, see capacity.py)
    TPOT_ij(r) = TPOT_j(λ_j) + KV transfer_ij(r) / (out_r - 1)           (the handoff delays the 2nd token)
Arrivals left unrouted by the LP count as misses. No discrete-event simulation runs here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from planner.capacity import DecodeProfile, PrefillProfile, WorkloadSample
from planner.cost_model import CostModel
from planner.plan import Prediction
from planner.routing import LINK_UTILISATION, proportional_routing, solve_routing_lp


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Orchestration:
    """Inputs of routing + scoring for P prefill and D decode replicas. `link_bw`/`link_lat`: P×D effective KV links."""

    prefill: Sequence[PrefillProfile]
    decode: Sequence[DecodeProfile]
    link_bw: np.ndarray
    link_lat: np.ndarray
    sample: WorkloadSample
    cost_model: CostModel
    compressed: bool = True

    def transfer_times(self) -> np.ndarray:
        """P×D×n seconds to hand each sampled request's KV from prefill i to decode j."""
        cm = self.cost_model
        ratio = cm.kv_compression if self.compressed else 1.0
        nbytes = self.sample.prompts * cm.kv_bytes_per_token / ratio
        return self.link_lat[:, :, None] + nbytes[None, None, :] / self.link_bw[:, :, None]

    def capacities(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cap_p = np.array([p.rate_cap for p in self.prefill])
        cap_d = np.array([d.rate_cap for d in self.decode])
        ratio = self.cost_model.kv_compression if self.compressed else 1.0
        kv_bytes = float(self.sample.prompts.mean()) * self.cost_model.kv_bytes_per_token / ratio
        link_cap = LINK_UTILISATION * self.link_bw / kv_bytes
        return cap_p, cap_d, link_cap

    def route(self, *, exact: bool) -> np.ndarray:
        """Flows P×D (req/s) at the sample's rate: the LP (`exact`) or the fast proportional split."""
        cap_p, cap_d, link_cap = self.capacities()
        rate = self.sample.rate
        if not exact:
            return proportional_routing(cap_p, cap_d, (link_cap > 0.05 * rate).astype(float), rate)
        mean_lat = np.array([float(p.latency.mean()) for p in self.prefill])
        tpot = np.array([d.tpot_at_cap if np.isfinite(d.tpot_at_cap) else 1e3 for d in self.decode])
        cost = mean_lat[:, None] + self.transfer_times().mean(axis=2) + self.sample.mean_output * tpot[None, :]
        return solve_routing_lp(cap_p, cap_d, cost, link_cap, rate)

    def capacity_rps(self) -> float:
        """Upper bound on the SLO-feasible rate: min(Σ prefill, Σ decode capacity)."""
        cap_p, cap_d, _ = self.capacities()
        return float(min(cap_p.sum(), cap_d.sum()))

    def predict(self, flows: np.ndarray) -> Prediction:
        s = self.sample
        rate = s.rate
        load_p = flows.sum(axis=1)
        load_d = flows.sum(axis=0)
        waits = np.array([p.wait(x) for p, x in zip(self.prefill, load_p, strict=True)])
        tpots = np.array([d.tpot(self.cost_model, x) for d, x in zip(self.decode, load_d, strict=True)])
        lat = np.stack([p.latency for p in self.prefill])                      # P×n
        ttft = waits[:, None] + lat                                             # P×n
        steps = np.maximum(s.outputs - 1, 1)
        tpot = tpots[None, :, None] + self.transfer_times() / steps[None, None, :]  # P×D×n
        ok = (ttft[:, None, :] <= s.slo.ttft_s) & (tpot[:, :, :] <= s.slo.tpot_s)
        hit = ok.mean(axis=2)                                                   # P×D
        attainment = float((flows * hit).sum() / rate)
        healthy = np.isfinite(waits)[:, None] & np.isfinite(tpots)[None, :]
        served = float(flows[healthy].sum())
        weights = flows * healthy
        wsum = float(weights.sum())
        mean_ttft = float((weights.sum(axis=1) * np.where(np.isfinite(ttft), ttft, 0).mean(axis=1)).sum() / wsum) if wsum else np.inf
        finite_tpot = np.where(np.isfinite(tpot), tpot, 0).mean(axis=2)
        mean_tpot = float((weights * finite_tpot).sum() / wsum) if wsum else np.inf
        return Prediction(slo_attainment=min(attainment, 1.0), throughput_tokens_s=served * s.mean_output,
                          goodput_rps=attainment * rate, capacity_rps=self.capacity_rps(),
                          mean_ttft_s=mean_ttft, mean_tpot_s=mean_tpot)


__all__ = ["Orchestration"]
