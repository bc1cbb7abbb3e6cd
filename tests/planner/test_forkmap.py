"""fork_map: the same list as running the jobs in turn, with forked workers only in a single-threaded process."""

from __future__ import annotations

import os
import threading

import pytest

from planner.forkmap import fork_map


def _jobs(n: int) -> list:
    return [lambda k=k: (k * k, os.getpid()) for k in range(n)]


def test_forked_workers_share_the_jobs_and_the_order_is_kept() -> None:
    if threading.active_count() > 1:
        pytest.skip("an earlier test left a thread running, so fork_map rightly runs every job here")
    out = fork_map(_jobs(7), workers=2)
    assert [v for v, _ in out] == [k * k for k in range(7)]
    pids = [pid for _, pid in out]
    assert all(pid == os.getpid() for pid in pids[0::2])  # this process runs every workers-th job
    assert all(pid != os.getpid() for pid in pids[1::2])  # a forked worker runs the rest


def test_one_worker_or_a_live_thread_runs_every_job_here() -> None:
    assert {pid for _, pid in fork_map(_jobs(4), workers=1)} == {os.getpid()}
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    try:  # NOTE: forking now could copy a lock the other thread holds; fork_map must not fork
        assert {pid for _, pid in fork_map(_jobs(4), workers=2)} == {os.getpid()}
    finally:
        stop.set()
        other.join()
