"""OpenMP threading and allocation defaults for thunder's processes, applied before torch allocates.

NOTE: on a small shared CPU box, OpenMP's default busy-wait (spinning workers) collapses a 2-thread engine as
soon as any other process wants a core: the same 64x64 bf16 workload ran at 63 tok/s with the default and at
237 tok/s with ``OMP_WAIT_POLICY=PASSIVE`` (1 thread: 275 tok/s), measured back to back on this machine kind.

``THP_MEM_ALLOC_ENABLE=1`` makes torch's CPU allocator ask for transparent huge pages (``madvise``) for large
tensors: the weights and the paged KV pool are streamed from DRAM every decode step, and with 4 KiB pages the
TLB misses showed (fp32 64x64 workload, 1 thread: 10.25 -> 9.58 s, twice each, interleaved). It has no effect
where THP is ``never``.

Both only take effect if they are in the environment before torch's OpenMP runtime starts / before its first
large allocation, so they are applied on `import thunder`; a value the user already set always wins.
"""

from __future__ import annotations

import os

__all__ = ["apply_runtime_env_defaults"]

RUNTIME_ENV_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE", "THP_MEM_ALLOC_ENABLE": "1"}
"""Environment variables (OpenMP wait policy, torch's huge-page allocation) set on `import thunder` if unset."""


def apply_runtime_env_defaults() -> None:
    """Put `RUNTIME_ENV_DEFAULTS` into `os.environ` where the user has not set them."""
    for key, value in RUNTIME_ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
