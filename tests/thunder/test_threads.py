"""`import thunder` sets OpenMP's passive wait policy before torch loads, and never overrides the user's value."""

from __future__ import annotations

import os
import subprocess
import sys

CODE = "import os, thunder, torch; print(os.environ['OMP_WAIT_POLICY'])"


def _run(env: dict[str, str]) -> str:
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env=env, check=True)
    return out.stdout.strip()


def test_passive_wait_policy_is_the_default() -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    assert _run(env) == "PASSIVE"


def test_a_user_value_wins() -> None:
    assert _run({**os.environ, "OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"
