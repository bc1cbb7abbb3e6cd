"""Event loop choice: uvloop when it is installed, the stdlib loop otherwise."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from types import ModuleType
from typing import Any, TypeVar

__all__ = ["loop_factory", "run", "uvloop_available"]

_T = TypeVar("_T")

_uvloop: ModuleType | None
try:
    import uvloop as _uvloop
except ImportError:  # pragma: no cover - uvloop is a declared dependency on Linux/macOS
    _uvloop = None


def uvloop_available() -> bool:
    return _uvloop is not None


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """`uvloop.new_event_loop` if available, else `asyncio.new_event_loop`."""
    return _uvloop.new_event_loop if _uvloop is not None else asyncio.new_event_loop


def run(main: Coroutine[Any, Any, _T], *, debug: bool | None = None) -> _T:
    """`asyncio.run` on uvloop when available."""
    with asyncio.Runner(loop_factory=loop_factory(), debug=debug) as runner:
        return runner.run(main)
