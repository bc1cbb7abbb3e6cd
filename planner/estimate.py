"""Analytical plan score: SLO attainment, throughput and capacity of a (grouping, phases, routing) at a rate.

Per sampled request r routed prefill i → decode j (queue formulas in `queueing.py`, profiles in `capacity.py`):
    P(TTFT ok) = 1 − P(W_i > D_ttft − latency_i(r, λ_i))   (batched prefill i: residual of the pass under way +
                 backlog past the token budget; latency of r's pass with the prompts batched with it at λ_i;
                 arrivals dealt round-robin, so c_a² of i's arrivals ≈ its share of them: G/G/1, Kingman)
    P(TPOT ok) = 1 − P(W_ij + W_j^kv > (D_tpot − TPOT_j)·(out_r − 1) − T_ij(r))
                 W_ij: M/G/1 wait of the KV link i→j (transfers serialise), W_j^kv: M/M/c wait for a KV slot on j,
                 T_ij(r) = α + compressed bytes/β: the handoff delays the second token.
attainment = Σ_ij (x_ij/λ) · mean_r[ P(TTFT ok) · P(TPOT ok) ]; arrivals left unrouted count as misses.
The routing LP's convex costs are the same queues' mean delays, normalised by the deadlines (see `curves`).
No discrete-event simulation runs here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from planner.capacity import DecodeProfile, PrefillProfile, WorkloadSample
from planner.cost_model import CostModel
from planner.plan import Prediction
from planner.queueing import NO_WAIT, convex_segments, mg1_wait_arrays, split_arrival_cv2, sum_exceeds_arrays
from planner.routing import LINK_UTILISATION, Curves, proportional_routing, solve_convex_routing_lp

BREAKPOINTS = np.array([0.0, 0.3, 0.5, 0.65, 0.75, 0.85, 0.92, 1.0])
"""Where each resource's delay curve is sampled, as shares of its capacity (denser where 1/(1 − ρ) bends)."""


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
    _capacities: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list, init=False, repr=False)
    """`capacities()` once computed (routing, the LP curves and the score all ask for them)."""

    def transfer_times(self) -> np.ndarray:
        """P×D×n seconds to hand each sampled request's KV from prefill i to decode j."""
        cm = self.cost_model
        ratio = cm.kv_compression if self.compressed else 1.0
        nbytes = self.sample.prompts * cm.kv_bytes_per_token / ratio
        return self.link_lat[:, :, None] + nbytes[None, None, :] / self.link_bw[:, :, None]

    def prefill_arrival_cv2(self, load: np.ndarray) -> np.ndarray:
        """float[P]: c_a² of each prefill replica's arrivals when it is dealt `load` of the sample's arrivals (the
        router deals them in turn, so a replica with a small share sees nearly regular arrivals)."""
        total = float(load.sum())
        return split_arrival_cv2(load / total if total > 0 else np.ones_like(load))

    def capacities(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(prefill, decode, link) SLO-feasible rates. A prefill replica's depends on the share of the arrivals it
        gets (see `prefill_arrival_cv2`); at capacity the shares follow the Poisson capacities."""
        if not self._capacities:
            self._capacities.append(self._solve_capacities())
        return self._capacities[0]

    def _solve_capacities(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        poisson = np.array([p.rate_cap for p in self.prefill])
        cv2 = self.prefill_arrival_cv2(poisson)
        cap_p = np.array([p.capacity(float(c)) for p, c in zip(self.prefill, cv2, strict=True)])
        cap_d = np.array([d.rate_cap for d in self.decode])
        link_cap = LINK_UTILISATION / self.transfer_times().mean(axis=2)
        return cap_p, cap_d, link_cap

    def route(self, *, exact: bool) -> np.ndarray:
        """Flows P×D (req/s) at the sample's rate: the convex LP (`exact`) or the fast proportional split."""
        cap_p, cap_d, link_cap = self.capacities()
        rate = self.sample.rate
        if not exact:
            return proportional_routing(cap_p, cap_d, (link_cap > 0.05 * rate).astype(float), rate)
        return solve_convex_routing_lp(self.curves(), np.zeros_like(link_cap), rate)

    def curves(self) -> Curves:
        """Per-resource convex costs for the LP, in deadline units per request: prefill latency + mean wait over
        the TTFT deadline; decode TPOT + mean KV-slot wait per step, and the link's transfer + mean wait per
        step, over the TPOT deadline. Sampled at `BREAKPOINTS` of each capacity."""
        s = self.sample
        cm = self.cost_model
        inv_steps = 1.0 / s.steps
        cap_p, cap_d, link_cap = self.capacities()

        def seg(cap: float, delay) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
            flows = cap * BREAKPOINTS
            return convex_segments(flows, np.array([f * delay(f) if f > 0 else 0.0 for f in flows]))

        pre = [seg(c, lambda f, p=p, a=a: (float(p.pass_latency(f).mean()) + p.wait(f, a)) / s.slo.ttft_s)
               for p, c, a in zip(self.prefill, cap_p, self.prefill_arrival_cv2(cap_p), strict=True)]

        def decode_delay(f: float, d: DecodeProfile) -> float:
            tpot = d.tpot(cm, f)
            return (tpot + d.kv_wait_tail(f, tpot).mean * float(inv_steps.mean())) / s.slo.tpot_s

        dec = [seg(c, lambda f, d=d: decode_delay(f, d)) for d, c in zip(self.decode, cap_d, strict=True)]
        # links, vectorised over P×D×K (M/G/1 mean wait in closed form; the pairs are many at 300+ devices)
        t = self.transfer_times()
        per_step = (t * inv_steps).mean(axis=2)[:, :, None]
        t_mean, t_sq = t.mean(axis=2)[:, :, None], (t**2).mean(axis=2)[:, :, None]
        flows = link_cap[:, :, None] * BREAKPOINTS
        rho = flows * t_mean
        with np.errstate(divide="ignore", invalid="ignore"):
            wait = np.where(rho < 1, flows * t_sq / (2 * (1 - rho)), np.inf)
            totals = np.where(flows > 0, flows * (per_step + wait * float(inv_steps.mean())) / s.slo.tpot_s, 0.0)
        widths, slopes = convex_segments(flows, totals)
        return Curves(prefill_widths=np.array([w for w, _ in pre]), prefill_slopes=np.array([k for _, k in pre]),
                      decode_widths=np.array([w for w, _ in dec]), decode_slopes=np.array([k for _, k in dec]),
                      link_widths=widths, link_slopes=slopes)

    def capacity_rps(self) -> float:
        """Upper bound on the SLO-feasible rate: min(Σ prefill, Σ decode capacity)."""
        cap_p, cap_d, _ = self.capacities()
        return float(min(cap_p.sum(), cap_d.sum()))

    def predict(self, flows: np.ndarray) -> Prediction:
        s = self.sample
        cm = self.cost_model
        rate = s.rate
        load_p = flows.sum(axis=1)
        load_d = flows.sum(axis=0)
        cv2_p = self.prefill_arrival_cv2(load_p)
        ttft_hit = np.stack([p.hit(x, a) for p, x, a in zip(self.prefill, load_p, cv2_p, strict=True)])  # P×n
        tpots = np.array([d.tpot(cm, x) for d, x in zip(self.decode, load_d, strict=True)])
        t = self.transfer_times()                                                             # P×D×n
        t_mean, t_sq = t.mean(axis=2), (t**2).mean(axis=2)
        ok = np.isfinite(tpots) & (tpots <= s.slo.tpot_s)
        kv = [d.kv_wait_tail(load_d[j], tpots[j]) if ok[j] else NO_WAIT for j, d in enumerate(self.decode)]
        kv_p, kv_theta = np.array([w.p for w in kv]), np.array([w.theta for w in kv])
        link_p, link_theta = mg1_wait_arrays(flows, t_mean, t_sq)
        slack = (s.slo.tpot_s - np.where(ok, tpots, 0.0))[None, :, None] * s.steps - t
        # NOTE: only the routed pairs of healthy decode replicas are scored (the rest hit 0), element by element
        # the same arithmetic as `sum_exceeds` on one pair, so the score does not depend on the vectorisation.
        live = (flows > 0) & ok[None, :]
        pi, pj = np.nonzero(live)
        hit = np.zeros(flows.shape)
        if pi.size:
            miss = sum_exceeds_arrays(link_p[pi, pj, None], link_theta[pi, pj, None], kv_p[pj, None],
                                      kv_theta[pj, None], slack[pi, pj])
            hit[pi, pj] = (ttft_hit[pi] * (1.0 - miss)).mean(axis=1)
        attainment = float((flows * hit).sum() / rate)
        waits = np.array([p.wait(x, a) for p, x, a in zip(self.prefill, load_p, cv2_p, strict=True)])
        lat = np.stack([p.pass_latency(x) for p, x in zip(self.prefill, load_p, strict=True)])
        healthy = np.isfinite(waits)[:, None] & np.isfinite(tpots)[None, :]
        weights = flows * healthy
        wsum = float(weights.sum())
        ttft = (waits[:, None] + lat).mean(axis=1)
        tpot = np.where(np.isfinite(tpots), tpots, 0)[None, :] + (t / s.steps).mean(axis=2)
        mean_ttft = float((weights.sum(axis=1) * np.where(np.isfinite(ttft), ttft, 0)).sum() / wsum) if wsum else np.inf
        mean_tpot = float((weights * tpot).sum() / wsum) if wsum else np.inf
        return Prediction(slo_attainment=min(attainment, 1.0), throughput_tokens_s=wsum * s.mean_output,
                          goodput_rps=attainment * rate, capacity_rps=self.capacity_rps(),
                          mean_ttft_s=mean_ttft, mean_tpot_s=mean_tpot)


__all__ = ["BREAKPOINTS", "Orchestration"]
