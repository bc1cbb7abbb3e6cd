"""`import thunder` sets OpenMP's passive wait policy and torch's huge-page allocation before torch allocates,
and never overrides the user's value."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CODE = "import os, sys, thunder, torch; print(os.environ[sys.argv[1]])"


def _run(env: dict[str, str], key: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", CODE, key], capture_output=True, text=True, env=env, check=True
    )
    return out.stdout.strip()


@pytest.mark.parametrize(("key", "default"), [("OMP_WAIT_POLICY", "PASSIVE"), ("THP_MEM_ALLOC_ENABLE", "1")])
def test_the_default(key: str, default: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != key}
    assert _run(env, key) == default


@pytest.mark.parametrize(("key", "value"), [("OMP_WAIT_POLICY", "ACTIVE"), ("THP_MEM_ALLOC_ENABLE", "0")])
def test_a_user_value_wins(key: str, value: str) -> None:
    assert _run({**os.environ, key: value}, key) == value


def test_large_tensors_get_huge_pages_where_thp_is_madvise() -> None:
    mode = (
        open("/sys/kernel/mm/transparent_hugepage/enabled").read()
        if os.path.exists("/sys/kernel/mm/transparent_hugepage/enabled")
        else ""
    )
    if "[madvise]" not in mode and "[always]" not in mode:
        pytest.skip(f"transparent huge pages are off here ({mode.strip() or 'no sysfs entry'})")
    code = (
        "import thunder, torch; t = torch.ones(64 << 20); "
        "print(open('/proc/self/smaps_rollup').read().split('AnonHugePages:')[1].split()[0])"
    )
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert int(out.stdout.strip()) > 0  # kB of anonymous huge pages backing the 256 MiB tensor
