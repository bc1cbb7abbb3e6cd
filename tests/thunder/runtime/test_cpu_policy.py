"""Per-role CPU shares: decode devices get the cores, prefill devices fewer threads at a lower priority."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from thunder.runtime.cpu_policy import SMALL_BATCH, CpuShare, cpu_shares


def test_decode_first_gives_decode_the_cores_prefill_leaves_while_its_batch_is_small() -> None:
    prefill, decode = cpu_shares("decode-first", ["prefill", "decode"], cores=2)
    assert (prefill, decode) == (CpuShare(1, 0), CpuShare(2, 0, small_batch_threads=1))
    assert [decode.threads_for(n) for n in (1, SMALL_BATCH - 1, SMALL_BATCH, 128)] == [1, 1, 2, 2]
    assert prefill.threads_for(128) == 1
    assert cpu_shares("decode-first", ["prefill", "prefill", "decode"], cores=8, prefill_nice=5) == [
        CpuShare(2, 5), CpuShare(2, 5), CpuShare(8, 0, 4)]  # fmt: skip


def test_even_and_colocated_split_the_cores_at_equal_priority() -> None:
    assert cpu_shares("even", ["prefill", "decode"], cores=2) == [CpuShare(1), CpuShare(1)]
    assert cpu_shares("decode-first", ["colocated", "colocated"], cores=4) == [CpuShare(2), CpuShare(2)]
    assert cpu_shares("decode-first", ["prefill", "decode"], cores=2, threads=3, prefill_nice=10) == [
        CpuShare(3, 10), CpuShare(3, 0)]  # fmt: skip
    with pytest.raises(ValueError, match="cpu_policy='fair'"):
        cpu_shares("fair", ["decode"])


def test_lower_priority_renices_every_thread_of_the_process_once() -> None:
    code = (
        "import os, threading, time\n"
        "from thunder.runtime.cpu_policy import lower_priority\n"
        # NOTE: a daemon thread, so a failed assertion exits instead of hanging on the Event.
        "ev = threading.Event(); t = threading.Thread(target=ev.wait, daemon=True); t.start()\n"
        "first, second = lower_priority(7), lower_priority(7)\n"
        "nices = {os.getpriority(os.PRIO_PROCESS, int(x)) for x in os.listdir('/proc/self/task')}\n"
        "ev.set(); t.join(); print(first, second, sorted(nices))\n"
    )
    start = os.getpriority(os.PRIO_PROCESS, 0)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    first, second, nices = out.stdout.strip().split(" ", 2)
    # Under `nice -n 7` or more (a suite run niced) there is nothing to lower: no thread changes.
    assert int(first) >= 2 if start < 7 else int(first) == 0
    assert int(second) == 0
    assert nices == str([max(7, start)])
