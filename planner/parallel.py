"""Lower level, part 1: the parallel configuration of one group (TP degrees, PP stage order, layer split).

- TP only inside a bucket of same-type devices on one node whose link is fast (>= `TP_MIN_BANDWIDTH`).
- Stage order: Held-Karp DP over the group's buckets minimising the summed PP hop time.
- Layer split: DP over (stage, layers assigned) under each stage's memory cap. Decode minimises the bottleneck
  stage (pipelined throughput); prefill minimises latency + bottleneck (sum + max of stage times).
- Across TP choices (and, for decode, target batch sizes) the winner has the highest SLO-feasible capacity.
Results are cached by a canonical group signature, so symmetric groups are solved once.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from planner.capacity import WorkloadSample, decode_profile, prefill_profile
from planner.cluster import Cluster
from planner.config import Link, ReplicaConfig, StageConfig
from planner.cost_model import CostModel

TP_DEGREES = (1, 2, 4, 8)
TP_MIN_BANDWIDTH = 10e9
"""bytes/s: TP all-reduces only over PCIe peer-to-peer or NVLink, never over Ethernet."""
MAX_TP_COMBOS = 8
DECODE_BATCH_TARGETS = (8, 64)
MAX_GROUP_DEVICES = 8
"""Largest replica the search builds (PP deeper than 8 stages only adds hops and bubbles in practice)."""


@dataclass(frozen=True, slots=True)
class _Bucket:
    gpu_type: str
    members: tuple[int, ...]
    intra: Link


def _split_layers(costs: Sequence[np.ndarray], total: int, use_sum: bool) -> tuple[tuple[int, ...], float] | None:
    """Min over splits (l_1..l_S, each >= 1, Σ = total) of max_s costs[s][l_s] (+ Σ_s when `use_sum`)."""
    idx = np.arange(total + 1)
    prev_idx = idx[:, None] - idx[None, :]
    valid = prev_idx >= 0
    best_max = costs[0].copy()
    best_sum = costs[0].copy() if use_sum else np.zeros_like(best_max)
    choices = []
    for c in costs[1:]:
        pm = np.where(valid, best_max[np.clip(prev_idx, 0, None)], np.inf)
        ps = np.where(valid, best_sum[np.clip(prev_idx, 0, None)], np.inf)
        new_max = np.maximum(pm, c[None, :])
        new_sum = ps + c[None, :] if use_sum else ps
        score = new_max + new_sum
        arg = np.argmin(score, axis=1)
        choices.append(arg)
        best_max, best_sum = new_max[idx, arg], new_sum[idx, arg]
    value = float(best_max[total] + best_sum[total])
    if not math.isfinite(value):
        return None
    layers, remaining = [], total
    for arg in reversed(choices):
        layer = int(arg[remaining])
        layers.append(layer)
        remaining -= layer
    layers.append(remaining)
    return tuple(reversed(layers)), value


class ParallelSolver:
    """Finds and caches the best `ReplicaConfig` of a device group for a phase."""

    def __init__(self, cluster: Cluster, cost_model: CostModel, sample: WorkloadSample) -> None:
        self.cluster = cluster
        self.cost_model = cost_model
        self.sample = sample
        self._cache: dict[tuple, tuple | None] = {}
        self._bw = cluster.bandwidth_matrix
        self._lat = cluster.latency_matrix

    def best_config(self, members: Collection[int], phase: str) -> ReplicaConfig | None:
        """Best config of the devices `members` (cluster indices) for `phase`; None if the model cannot fit."""
        if len(members) > MAX_GROUP_DEVICES:
            return None
        buckets = self._buckets(members)
        key = self._signature(buckets, phase)
        if key not in self._cache:
            self._cache[key] = self._solve(buckets, phase)
        shape = self._cache[key]
        return None if shape is None else self._instantiate(buckets, shape)

    # ---- structure ----------------------------------------------------------------------------------------------
    def _buckets(self, members: Collection[int]) -> list[_Bucket]:
        out = []
        for (_, gpu_type), idx in self.cluster.node_type_buckets(members).items():
            sub = self._bw[np.ix_(idx, idx)]
            bw = float(sub.min()) if len(idx) > 1 else math.inf
            lat = float(self._lat[np.ix_(idx, idx)].max())
            out.append(_Bucket(gpu_type, tuple(idx), Link(bandwidth=bw, latency=lat)))
        out.sort(key=lambda b: (b.gpu_type, -len(b.members), -b.intra.bandwidth, b.members))
        return out

    def _signature(self, buckets: list[_Bucket], phase: str) -> tuple:
        heads = [b.members[0] for b in buckets]
        inter = tuple(round(float(self._bw[i, j]), -6) for i in heads for j in heads)
        lats = tuple(round(float(self._lat[i, j]), 7) for i in heads for j in heads)
        return (phase, tuple((b.gpu_type, len(b.members), round(b.intra.bandwidth, -6)) for b in buckets), inter, lats)

    def _order(self, buckets: list[_Bucket], tokens: float) -> list[int]:
        """Held-Karp DP: the bucket order (a path) with the least summed hop time for `tokens` activations."""
        k = len(buckets)
        if k <= 2:
            return list(range(k))
        act = tokens * self.cost_model.model.hidden_size * self.cost_model.dtype_bytes
        heads = [b.members[0] for b in buckets]
        hop = np.array([[self._lat[a, b] + act / self._bw[a, b] if a != b else 0.0 for b in heads] for a in heads])
        if k > 10:  # NOTE: Held-Karp is O(2^k k^2); beyond 10 buckets fall back to greedy nearest neighbour
            order, left = [0], set(range(1, k))
            while left:
                nxt = min(left, key=lambda j: hop[order[-1], j])
                order.append(nxt)
                left.remove(nxt)
            return order
        best: dict[tuple[int, int], tuple[float, int]] = {(1 << j, j): (0.0, -1) for j in range(k)}
        for size in range(2, k + 1):
            for subset in itertools.combinations(range(k), size):
                mask = sum(1 << j for j in subset)
                for j in subset:
                    prev_mask = mask ^ (1 << j)
                    best[(mask, j)] = min((best[(prev_mask, i)][0] + hop[i, j], i) for i in subset if i != j)
        full = (1 << k) - 1
        end = min(range(k), key=lambda j: best[(full, j)][0])
        order, mask = [], full
        while end != -1:
            order.append(end)
            _, prev = best[(mask, end)]
            mask ^= 1 << end
            end = prev
        return order[::-1]

    # ---- search -------------------------------------------------------------------------------------------------
    def _solve(self, buckets: list[_Bucket], phase: str) -> tuple | None:
        options = [[t for t in TP_DEGREES if t <= len(b.members) and len(b.members) % t == 0
                    and (t == 1 or b.intra.bandwidth >= TP_MIN_BANDWIDTH)] for b in buckets]
        combos = list(itertools.product(*options))
        if len(combos) > MAX_TP_COMBOS:
            combos = [tuple(max(t for t in opts if t <= deg) for opts in options) for deg in TP_DEGREES]
        decode = phase != "prefill"
        ref_tokens = self.sample.prompts.mean() if not decode else 8.0
        order = self._order(buckets, ref_tokens)
        best: tuple[float, tuple] | None = None
        for combo in combos:
            stages = [(b, combo[b]) for b in order for _ in range(len(buckets[b].members) // combo[b])]
            for target in DECODE_BATCH_TARGETS if decode else (None,):
                split = self._split(buckets, stages, target)
                if split is None:
                    continue
                shape = (tuple(stages), split)
                config = self._instantiate(buckets, shape)
                if decode:
                    score = decode_profile(self.cost_model, config, self.sample).rate_cap
                else:
                    prof = prefill_profile(self.cost_model, config, self.sample)
                    score = prof.rate_cap - 1e-6 * float(prof.latency.mean())
                if best is None or score > best[0]:
                    best = (score, shape)
        return None if best is None else best[1]

    def _split(self, buckets: list[_Bucket], stages: list[tuple[int, int]], batch: int | None) -> tuple[int, ...] | None:
        cm, model = self.cost_model, self.cost_model.model
        total = model.num_layers
        if len(stages) > total:
            return None
        layers = np.arange(total + 1, dtype=np.float64)
        kvl = model.kv_bytes_per_token_layer(cm.kv_dtype_bytes)
        if batch is None:  # prefill: memory for one full-context prompt in flight; latency at the mean prompt
            load = cm.prefill_load([self.sample.prompts.mean()])
            kv_need = float(model.max_context)
        else:
            micro = math.ceil(batch / min(batch, len(stages)))
            load = cm.decode_load(micro, self.sample.mean_context)
            kv_need = batch * self.sample.mean_context
        costs = []
        last = len(stages) - 1
        for k, (b, tp) in enumerate(stages):
            tmpl = StageConfig(gpu_type=buckets[b].gpu_type, device_ids=tuple(str(i) for i in buckets[b].members[:tp]), num_layers=1,
                               tp_bandwidth=buckets[b].intra.bandwidth, tp_latency=buckets[b].intra.latency)
            t = np.asarray(cm.stage_cost(tmpl, layers, first=k == 0, last=k == last, **load), dtype=np.float64)
            free = cm.stage_free_bytes(tmpl, layers, first=k == 0, last=k == last)
            t = np.where((free >= layers * kv_need * kvl) & (layers >= 1), t, np.inf)
            costs.append(t)
        result = _split_layers(costs, total, use_sum=batch is None)
        return None if result is None else result[0]

    def _instantiate(self, buckets: list[_Bucket], shape: tuple) -> ReplicaConfig:
        stages_spec, split = shape
        used = {b: 0 for b in range(len(buckets))}
        stages: list[StageConfig] = []
        for (b, tp), n_layers in zip(stages_spec, split, strict=True):
            bucket = buckets[b]
            ids = bucket.members[used[b]: used[b] + tp]
            used[b] += tp
            stages.append(StageConfig(
                gpu_type=bucket.gpu_type, device_ids=tuple(self.cluster.devices[i].id for i in ids),
                num_layers=n_layers, tp_bandwidth=bucket.intra.bandwidth if tp > 1 else math.inf,
                tp_latency=bucket.intra.latency if tp > 1 else 0.0))
        hops = []
        for a, b in itertools.pairwise(stages):
            i, j = self.cluster.index[a.device_ids[0]], self.cluster.index[b.device_ids[0]]
            hops.append(Link(bandwidth=float(self._bw[i, j]), latency=float(self._lat[i, j])))
        return ReplicaConfig(stages=tuple(stages), hops=tuple(hops))


def group_link(cluster: Cluster, a: ReplicaConfig, b: ReplicaConfig) -> Link:
    """Effective KV-handoff link between two replicas: each pair of stages whose layer ranges overlap moves its
    share of the KV in parallel (over min(tp_a, tp_b) device pairs); the slowest share sets the time."""
    total = a.num_layers
    worst, latency = 0.0, 0.0
    starts_a = np.cumsum((0,) + a.layer_split)
    starts_b = np.cumsum((0,) + b.layer_split)
    for sa, stage_a in enumerate(a.stages):
        for sb, stage_b in enumerate(b.stages):
            overlap = min(starts_a[sa + 1], starts_b[sb + 1]) - max(starts_a[sa], starts_b[sb])
            if overlap <= 0:
                continue
            i, j = cluster.index[stage_a.device_ids[0]], cluster.index[stage_b.device_ids[0]]
            bw = float(cluster.bandwidth_matrix[i, j]) * min(stage_a.tp, stage_b.tp)
            worst = max(worst, overlap / total / bw)
            latency = max(latency, float(cluster.latency_matrix[i, j]))
    return Link(bandwidth=1.0 / worst if worst > 0 else math.inf, latency=latency)


__all__ = ["MAX_GROUP_DEVICES", "TP_MIN_BANDWIDTH", "ParallelSolver", "group_link"]
