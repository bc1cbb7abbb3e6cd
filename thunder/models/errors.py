"""Model errors: a missing model and an unsupported one, each naming what was looked for and the fix."""

from __future__ import annotations

__all__ = ["ModelError", "ModelNotFoundError", "UnsupportedModelError"]


class ModelError(Exception):
    """Base of every model loading error."""


class ModelNotFoundError(ModelError, FileNotFoundError):
    """No model under the given name or path."""


class UnsupportedModelError(ModelError, ValueError):
    """The model exists but thunder cannot run it (architecture, rope scaling, weight format)."""
