"""thunder: LLM serving on heterogeneous GPU clouds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from thunder._threads import apply_runtime_env_defaults

apply_runtime_env_defaults()

if TYPE_CHECKING:
    from thunder.llm import AsyncLLM

__version__ = "0.1.0"

__all__ = ["AsyncLLM", "__version__"]


def __getattr__(name: str) -> Any:
    # NOTE: lazy, so `import thunder` stays light (no torch) until AsyncLLM is used.
    if name == "AsyncLLM":
        from thunder.llm import AsyncLLM

        return AsyncLLM
    raise AttributeError(f"module 'thunder' has no attribute {name!r}")
