"""Initial groupings for the tabu search, one from each end of the group-size range.

`initial_groups`: agglomerative (average-linkage) clustering of the bandwidth graph, cut into replicas. Walking
the dendrogram bottom-up, each cluster's not-yet-assigned devices ("residual") are carved into groups as soon as
they can hold a replica, so groups form from the most tightly connected devices first.
`smallest_groups`: as many replicas as memory allows — each node's same-type devices cut into the fewest
devices that hold the model (e.g. 2x 48 GB or 4x 24 GB for a 30B model), leftovers pooled per region, then
per cluster, the same way. Devices left over stay unused (the search may move them into groups).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.cluster.hierarchy import linkage
from scipy.spatial.distance import squareform

from planner.cluster import Cluster

Feasible = Callable[[frozenset[int]], bool]


def initial_groups(cluster: Cluster, feasible: Feasible, min_bytes: float) -> tuple[list[frozenset[int]], list[int]]:
    """(groups, unused device indices). `feasible(members)` says whether a set can host a replica; `min_bytes`
    is a cheap lower bound on the memory a replica needs (checked first)."""
    n = len(cluster.devices)
    memory = np.array([d.gpu.memory_bytes for d in cluster.devices])
    if n == 1:
        members = frozenset({0})
        return ([members], []) if feasible(members) else ([], [0])
    dist = 1.0 / cluster.bandwidth_matrix  # inf bandwidth on the diagonal -> 0 distance
    tree = linkage(squareform(dist, checks=False), method="average")
    residual: dict[int, list[int]] = {i: [i] for i in range(n)}
    groups: list[frozenset[int]] = []
    for k, (a, b, _, _) in enumerate(tree):
        pool = residual.pop(int(a)) + residual.pop(int(b))
        residual[n + k] = _carve(cluster, pool, memory, feasible, min_bytes, groups)
    unused = sorted(i for rest in residual.values() for i in rest)
    return groups, unused


def _carve(cluster: Cluster, pool: list[int], memory: np.ndarray, feasible: Feasible, min_bytes: float,
           groups: list[frozenset[int]]) -> list[int]:
    if memory[pool].sum() < min_bytes:
        return pool
    pool = sorted(pool, key=lambda i: (cluster.devices[i].node, cluster.devices[i].gpu_type, i))
    rest: list[int] = []
    chunk: list[int] = []
    for i in pool:
        chunk.append(i)
        if memory[chunk].sum() >= min_bytes and feasible(frozenset(chunk)):
            groups.append(frozenset(chunk))
            chunk = []
    rest += chunk
    return rest


def smallest_groups(cluster: Cluster, feasible: Feasible) -> tuple[list[frozenset[int]], list[int]]:
    """(groups, unused): the most replicas memory allows, carved bucket by bucket (node + GPU type), then region,
    then the whole cluster for the leftovers. Each group is the shortest prefix of its pool that is `feasible`."""
    devs = cluster.devices
    groups: list[frozenset[int]] = []

    def carve(pool: list[int]) -> list[int]:
        pool = sorted(pool, key=lambda i: (-devs[i].gpu.memory_bytes, devs[i].node, i))
        while pool:
            size = next((k for k in range(1, len(pool) + 1) if feasible(frozenset(pool[:k]))), None)
            if size is None:
                break
            groups.append(frozenset(pool[:size]))
            pool = pool[size:]
        return pool

    left = [i for pool in cluster.node_type_buckets().values() for i in carve(pool)]
    regions: dict[str, list[int]] = {}
    for i in left:
        regions.setdefault(devs[i].region, []).append(i)
    left = [i for pool in regions.values() for i in carve(pool)]
    return groups, sorted(carve(left))


__all__ = ["initial_groups", "smallest_groups"]
