"""`Cluster`: the devices a plan may use, their prices, and the links between them (a networkx graph).

Units: link bandwidth in the TOML is Gbit/s (`*_gbps`), latency in microseconds (`*_latency_us`); on the graph and
in every planner computation, bandwidth is bytes/s (edge attr `bandwidth`) and latency seconds (edge attr `latency`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from planner.errors import SpecError
from planner.gpus import GPUType, load_gpu_catalog, lookup_gpu, read_toml


def gbps_to_bytes(gbps: float) -> float:
    """Gbit/s -> bytes/s."""
    return gbps * 1e9 / 8


@dataclass(frozen=True, slots=True, kw_only=True)
class Device:
    """One accelerator. `id` is "<node>/<index>" and unique in its cluster."""

    id: str
    gpu: GPUType
    node: str
    price_per_hour: float
    region: str = ""

    @property
    def gpu_type(self) -> str:
        return self.gpu.name


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkDefaults:
    """Link assumptions used where the cluster file names no explicit link (all Gbit/s and microseconds)."""

    intra_node_gbps: float = 160.0
    """PCIe 4.0 x16 peer-to-peer, about 20 GB/s, for nodes without NVLink."""
    intra_node_latency_us: float = 10.0
    inter_node_gbps: float = 10.0
    inter_node_latency_us: float = 500.0
    same_region_gbps: float | None = None
    """Bandwidth between different nodes of one region (None: `inter_node_gbps`)."""
    same_region_latency_us: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Cluster:
    """Devices plus a complete link graph over device ids.

    `graph` edges carry `bandwidth` (bytes/s) and `latency` (s). `bandwidth_matrix` / `latency_matrix` hold the
    same numbers indexed like `devices` (diagonal: inf bandwidth, 0 latency) for vectorised use.
    """

    name: str
    devices: tuple[Device, ...]
    graph: nx.Graph
    index: Mapping[str, int] = field(init=False, repr=False)
    bandwidth_matrix: np.ndarray = field(init=False, repr=False)
    latency_matrix: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.devices:
            raise SpecError(f"cluster {self.name!r}: no devices; add at least one [[node]] with count >= 1")
        index = {d.id: i for i, d in enumerate(self.devices)}
        if len(index) != len(self.devices):
            raise SpecError(f"cluster {self.name!r}: duplicate device ids; node names must be unique")
        n = len(self.devices)
        bw = np.full((n, n), np.inf)
        lat = np.zeros((n, n))
        for a, b, attrs in self.graph.edges(data=True):
            i, j = index[a], index[b]
            bw[i, j] = bw[j, i] = attrs["bandwidth"]
            lat[i, j] = lat[j, i] = attrs["latency"]
        bw.setflags(write=False)
        lat.setflags(write=False)
        object.__setattr__(self, "index", index)
        object.__setattr__(self, "bandwidth_matrix", bw)
        object.__setattr__(self, "latency_matrix", lat)

    # ---- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_toml(cls, path: str | Path, *, catalog: Mapping[str, GPUType] | None = None) -> Cluster:
        """Load a cluster file (see `examples/clusters/*.toml` for the format)."""
        raw = read_toml(path)
        return cls.from_mapping(raw, catalog=catalog, default_name=Path(path).stem)

    @classmethod
    def from_mapping(
        cls, raw: Mapping[str, Any], *, catalog: Mapping[str, GPUType] | None = None, default_name: str = "cluster"
    ) -> Cluster:
        catalog = catalog if catalog is not None else load_gpu_catalog()
        name = str(raw.get("name", default_name))
        net = _network_defaults(raw.get("network", {}), name)
        nodes = raw.get("node")
        if not isinstance(nodes, list) or not nodes:
            raise SpecError(f"cluster {name!r}: no [[node]] tables; add e.g. [[node]] name='n0' gpu='a40' count=4")
        devices: list[Device] = []
        node_intra: dict[str, tuple[float, float]] = {}
        node_region: dict[str, str] = {}
        for k, node in enumerate(nodes):
            where = f"cluster {name!r} node[{k}]"
            node_name = str(node.get("name", f"n{k}"))
            if node_name in node_intra:
                raise SpecError(f"{where}: duplicate node name {node_name!r}; give every node a unique name")
            gpu = lookup_gpu(catalog, str(node.get("gpu", "")), where=where)
            count = node.get("count", 1)
            if not isinstance(count, int) or count < 1:
                raise SpecError(f"{where}: count={count!r} must be an integer >= 1")
            price = node.get("price_per_gpu_hour")
            if not isinstance(price, int | float) or price < 0:
                raise SpecError(f"{where}: price_per_gpu_hour={price!r} must be a number >= 0 (USD per GPU-hour)")
            region = str(node.get("region", ""))
            default_intra = gpu.nvlink_gbps * 8 / 2 if node.get("nvlink", False) else net.intra_node_gbps
            intra = _positive(node.get("intra_node_gbps", default_intra), f"{where}: intra_node_gbps")
            intra_lat = float(node.get("intra_node_latency_us", net.intra_node_latency_us))
            node_intra[node_name] = (intra, intra_lat)
            node_region[node_name] = region
            devices += [
                Device(id=f"{node_name}/{i}", gpu=gpu, node=node_name, price_per_hour=float(price), region=region)
                for i in range(count)
            ]
        explicit = _explicit_links(raw.get("link", []), node_intra, name)
        graph = nx.Graph()
        graph.add_nodes_from((d.id, {"gpu_type": d.gpu_type, "node": d.node}) for d in devices)
        for i, a in enumerate(devices):
            for b in devices[i + 1 :]:
                gbps, lat_us = _link_between(a.node, b.node, node_intra, node_region, explicit, net)
                graph.add_edge(a.id, b.id, bandwidth=gbps_to_bytes(gbps), latency=lat_us * 1e-6)
        return cls(name=name, devices=tuple(devices), graph=graph)

    # ---- queries ----------------------------------------------------------------------------------------------------
    @property
    def price_per_hour(self) -> float:
        """Total USD/h of all devices."""
        return float(sum(d.price_per_hour for d in self.devices))

    def device(self, device_id: str) -> Device:
        try:
            return self.devices[self.index[device_id]]
        except KeyError:
            raise SpecError(f"cluster {self.name!r}: no device {device_id!r}") from None

    def link(self, a: str, b: str) -> tuple[float, float]:
        """(bandwidth bytes/s, latency s) between two devices."""
        i, j = self.index[a], self.index[b]
        return float(self.bandwidth_matrix[i, j]), float(self.latency_matrix[i, j])

    def gpu_types(self) -> dict[str, GPUType]:
        return {d.gpu_type: d.gpu for d in self.devices}

    def node_type_buckets(self, members: Iterable[int] | None = None) -> dict[tuple[str, str], list[int]]:
        """Device indices (all, or `members`) by (node, GPU type), ascending; keys in order of first index."""
        out: dict[tuple[str, str], list[int]] = {}
        for i in sorted(members) if members is not None else range(len(self.devices)):
            d = self.devices[i]
            out.setdefault((d.node, d.gpu_type), []).append(i)
        return out

    def with_link(self, a: str, b: str, *, bandwidth: float, latency: float | None = None) -> Cluster:
        """A copy with the link between devices (or whole nodes, if `a`/`b` name nodes) changed (bytes/s, s)."""
        graph = self.graph.copy()
        left = [d.id for d in self.devices if a in (d.id, d.node)]
        right = [d.id for d in self.devices if b in (d.id, d.node)]
        if not left or not right:
            raise SpecError(f"cluster {self.name!r}: with_link({a!r}, {b!r}): unknown device or node name")
        for x in left:
            for y in right:
                if x != y:
                    attrs = graph.edges[x, y]
                    attrs["bandwidth"] = bandwidth
                    if latency is not None:
                        attrs["latency"] = latency
        return replace(self, graph=graph)

    def without(self, device_ids: Sequence[str]) -> Cluster:
        """A copy without the given devices."""
        drop = set(device_ids)
        graph = self.graph.copy()
        graph.remove_nodes_from(drop)
        return replace(self, devices=tuple(d for d in self.devices if d.id not in drop), graph=graph)


def _positive(value: Any, where: str) -> float:
    if not isinstance(value, int | float) or value <= 0:
        raise SpecError(f"{where}={value!r} must be a number > 0")
    return float(value)


def _network_defaults(raw: Mapping[str, Any], name: str) -> NetworkDefaults:
    known = set(NetworkDefaults.__dataclass_fields__)
    unknown = set(raw) - known
    if unknown:
        raise SpecError(f"cluster {name!r} [network]: unknown keys {sorted(unknown)}; known: {sorted(known)}")
    for key, value in raw.items():
        if value is not None:
            _positive(value, f"cluster {name!r} [network].{key}")
    return NetworkDefaults(**{k: float(v) for k, v in raw.items()})


def _explicit_links(
    links: Any, node_intra: Mapping[str, Any], name: str
) -> dict[frozenset[str], tuple[float, float | None]]:
    out: dict[frozenset[str], tuple[float, float | None]] = {}
    if not isinstance(links, list):
        raise SpecError(f"cluster {name!r}: `link` must be an array of tables ([[link]])")
    for k, link in enumerate(links):
        where = f"cluster {name!r} link[{k}]"
        pair = link.get("nodes")
        if not isinstance(pair, list) or len(pair) != 2 or not all(p in node_intra for p in pair):
            raise SpecError(f"{where}: nodes={pair!r} must name two nodes from [[node]] (known: {sorted(node_intra)})")
        gbps = _positive(link.get("gbps"), f"{where}: gbps")
        lat = link.get("latency_us")
        out[frozenset(pair)] = (gbps, None if lat is None else float(lat))
    return out


def _link_between(
    a: str,
    b: str,
    node_intra: Mapping[str, tuple[float, float]],
    node_region: Mapping[str, str],
    explicit: Mapping[frozenset[str], tuple[float, float | None]],
    net: NetworkDefaults,
) -> tuple[float, float]:
    if a == b:
        return node_intra[a]
    if (hit := explicit.get(frozenset((a, b)))) is not None:
        gbps, lat = hit
        return gbps, net.inter_node_latency_us if lat is None else lat
    if node_region[a] and node_region[a] == node_region[b] and net.same_region_gbps is not None:
        lat = net.same_region_latency_us if net.same_region_latency_us is not None else net.inter_node_latency_us
        return net.same_region_gbps, lat
    return net.inter_node_gbps, net.inter_node_latency_us


__all__ = ["Cluster", "Device", "NetworkDefaults", "gbps_to_bytes"]
