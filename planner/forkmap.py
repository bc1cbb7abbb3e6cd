"""`fork_map`: run independent, deterministic jobs on forked workers and this process at once.

The planner's last steps (the Swap polish and the simulator check of its finalists) are a handful of pure jobs of
about equal size over shared, read-only state (the evaluator's caches), which a forked worker inherits for free;
closures do not pickle, so the jobs travel by index and only their results are pickled back.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

_JOBS: Sequence[Callable[[], object]] = ()
"""The jobs of the `fork_map` call under way, inherited by its forked workers."""


def _run_job(k: int) -> object:
    return _JOBS[k]()


def fork_map(jobs: Sequence[Callable[[], T]], workers: int) -> list[T]:
    """`[job() for job in jobs]`; with `workers` > 1, forked workers take every job k with k % workers != 0 while
    this process runs the rest. Jobs must be pure and deterministic (and return picklable values), so the result
    is the same list either way.

    NOTE: fork is only safe in a process with no other thread (a lock another thread holds stays locked in the
    child forever), so a process with threads (the serving runtime, a live progress bar) runs the jobs in turn."""
    global _JOBS
    if (workers <= 1 or len(jobs) < 2 or threading.active_count() > 1
            or "fork" not in multiprocessing.get_all_start_methods()):
        return [job() for job in jobs]
    _JOBS = jobs
    try:
        theirs = [k for k in range(len(jobs)) if k % workers]
        with multiprocessing.get_context("fork").Pool(workers - 1) as pool:
            pending = pool.map_async(_run_job, theirs)
            out: dict[int, object] = {k: jobs[k]() for k in range(0, len(jobs), workers)}
            out.update(zip(theirs, pending.get(), strict=True))
    finally:
        _JOBS = ()
    return [out[k] for k in range(len(jobs))]  # type: ignore[misc]


__all__ = ["fork_map"]
