"""The OpenAI servers that benchmarks/serving.py loads: how each is started, made ready, and stopped for good.

Every server runs in its own process group (session), so stopping it reaches its whole tree: thunder's device
processes, vLLM's engine-core process. `running_server` is a context manager that never leaves a process
behind, whether the benchmark finishes, raises, or is interrupted.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE / "peers"))  # NOTE: run_vllm.py imports its sibling runner_common by bare name

from run_vllm import vllm_env  # noqa: E402  (the env vars peers.md prescribes for vLLM on CPU)

from benchmarks.offline_throughput import LAUNCH_ENV  # noqa: E402  (the env before `import thunder` changed it)

VLLM_CLI = HERE / "serving_vllm_cli.py"


class ServerError(RuntimeError):
    """A server died or never became ready; the message names its log."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSpec:
    """How to start one system's OpenAI server on `port`."""

    name: str
    command: tuple[str, ...]
    port: int
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path = ROOT
    ready_timeout_s: float = 600.0
    stop_signal: int = signal.SIGINT  # both servers shut down cleanly on Ctrl-C
    stop_grace_s: float = 30.0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def thunder_spec(
    *, mode: str, dtype: str, devices: int, port: int, extra: tuple[str, ...] = ()
) -> ServerSpec:
    """`thunder run` with real SmolLM2 weights on `devices` CPU workers (cores split evenly among them)."""
    command = (
        str(ROOT / ".venv" / "bin" / "thunder"), "run", "--mode", mode, "--dtype", dtype,
        "--devices", str(devices), "--host", "127.0.0.1", "--port", str(port), *extra,
    )  # fmt: skip
    return ServerSpec(name=f"thunder-{mode}", command=command, port=port)


def vllm_spec(*, venvs: Path, model_dir: Path, served_name: str, dtype: str, threads: int, port: int,
              work_dir: Path) -> ServerSpec:  # fmt: skip
    """`vllm serve` on the same HF weights; its torch.compile start-up takes 85-120 s here (peers.md)."""
    python = venvs / "vllm" / "bin" / "python"
    if not python.exists():
        raise ServerError(
            f"no vLLM venv at {python.parent.parent}; run `bash benchmarks/setup_peers.sh vllm`"
        )
    command = (
        str(python), str(VLLM_CLI), "serve", str(model_dir), "--served-model-name", served_name,
        "--host", "127.0.0.1", "--port", str(port), "--dtype", dtype, "--max-model-len", "1024",
        "--seed", "0",
    )  # fmt: skip
    # NOTE: cwd is a scratch dir: a `vllm` folder in the cwd would shadow the vllm package.
    return ServerSpec(name="vllm", command=command, port=port, env=vllm_env(threads), cwd=work_dir,
                      ready_timeout_s=900.0, stop_signal=signal.SIGTERM)  # fmt: skip


def get_json(url: str, timeout_s: float = 5.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return json.loads(response.read() or b"{}")


def _is_ready(spec: ServerSpec) -> bool:
    try:
        get_json(spec.base_url + "/health")
    except (urllib.error.URLError, OSError, ValueError):
        return False  # refused, 503 "not ready", or an empty/odd body while starting
    return True


def _log_tail(log: Path, lines: int = 25) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _stop(process: subprocess.Popen, spec: ServerSpec) -> None:
    """Ask the server (the group leader only) to stop, then kill what is left of its process group."""
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(spec.stop_signal)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=spec.stop_grace_s)
    # NOTE: the group outlives its leader when a child lingers (an engine process mid-step); kill the group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextlib.contextmanager
def running_server(spec: ServerSpec, log: Path) -> Iterator[float]:
    """Start `spec`, wait until its /health answers 200, yield the start-up seconds; always stop it."""
    env = {**LAUNCH_ENV, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false", **spec.env}
    start = time.perf_counter()
    with log.open("w") as sink:
        process = subprocess.Popen(
            spec.command, cwd=spec.cwd, env=env, stdout=sink, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    try:
        while not _is_ready(spec):
            if process.poll() is not None:
                raise ServerError(
                    f"{spec.name} exited with code {process.returncode} before it was ready; "
                    f"last lines of {log}:\n{_log_tail(log)}"
                )
            if time.perf_counter() - start > spec.ready_timeout_s:
                raise ServerError(f"{spec.name} not ready after {spec.ready_timeout_s:.0f} s; see {log}")
            time.sleep(1.0)
        yield time.perf_counter() - start
        if process.poll() is not None:
            raise ServerError(f"{spec.name} died during the benchmark (code {process.returncode}); see {log}")
    finally:
        _stop(process, spec)
