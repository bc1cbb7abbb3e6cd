"""Planning time vs cluster size (8, 32, 128, 320 devices) and lightweight replan vs full plan, same run.

Clusters: 8 = examples/clusters/paper-a40-3090ti-8.toml; 32 = paper-cloud-32.toml; 128 and 320 replicate the
cloud-32 node mix (4 and 10 copies, each copy its own pair of regions). Workload: conversation trace at a rate
scaled with the device count. Targets (issue 5): 32 devices < 5 s, 320 devices < 120 s, replan < 200 ms at 32.

    .venv/bin/python benchmarks/planner_scaling.py [--sizes 8 32 128 320] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from planner import Budget, Cluster, DeviceLost, ModelSpec, Workload, WorkloadShift, plan, read_toml, replan

ROOT = Path(__file__).resolve().parents[1]
CLUSTERS = ROOT / "examples" / "clusters"
TARGETS = {32: 5.0, 320: 120.0}


def cluster_of(size: int) -> Cluster:
    if size == 8:
        return Cluster.from_toml(CLUSTERS / "paper-a40-3090ti-8.toml")
    raw = read_toml(CLUSTERS / "paper-cloud-32.toml")
    copies = size // 32
    nodes = [{**n, "name": f"{n['name']}-c{c}", "region": f"{n['region']}-c{c}"}
             for c in range(copies) for n in raw["node"]]
    return Cluster.from_mapping({**raw, "name": f"cloud-{size}", "node": nodes})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[8, 32, 128, 320])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    model = ModelSpec.from_catalog("llama-30b")
    base = Workload.from_trace("conversation")
    print(f"{'devices':>7} {'groups':>6} {'P:D':>7} {'iters':>5} {'plan s':>8} {'target s':>8} {'attain':>7} {'cap rps':>8}")
    plans = {}
    for size in args.sizes:
        cluster = cluster_of(size)
        wl = base.with_rate(base.rate * size / 32)
        t0 = time.perf_counter()
        p = plan(cluster, model, wl, Budget(usd_per_hour=cluster.price_per_hour + 1e-6), seed=args.seed)
        elapsed = time.perf_counter() - t0
        plans[size] = (cluster, wl, p, elapsed)
        pc = p.phase_counts
        target = TARGETS.get(size)
        print(f"{size:>7} {len(p.groups):>6} {pc.get('prefill', 0):>3}:{pc.get('decode', 0):<3} {p.search['iterations']:>5} "
              f"{elapsed:>8.2f} {'' if target is None else f'< {target:g}':>8} {p.prediction.slo_attainment:>7.3f} "
              f"{p.prediction.capacity_rps:>8.2f}")
    if 32 in plans:
        cluster, wl, p, full_s = plans[32]
        lost = DeviceLost(device_id=p.groups[0].device_ids[0])
        shift = WorkloadShift(workload=Workload.from_trace("coding"))
        for name, events in (("device lost", [lost]), ("workload shift", [shift])):
            runs = []
            for _ in range(5):
                t0 = time.perf_counter()
                replan(p, events, cluster=cluster, model=model, workload=wl)
                runs.append(time.perf_counter() - t0)
            best = min(runs)
            print(f"replan at 32 ({name}): {best * 1e3:.1f} ms (target < 200 ms); full plan {full_s:.2f} s "
                  f"-> full/replan = {full_s / best:.0f}x (paper: 157 s / 13 s = 12x)")


if __name__ == "__main__":
    main()
