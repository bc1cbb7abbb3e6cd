"""Wire type registry: a tag names each message class that may cross a process boundary."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from ._errors import CodecError

__all__ = ["message", "register_message", "registered_class", "tag_of"]

_T = TypeVar("_T", bound=type)
_BY_TAG: dict[str, type] = {}
_BY_CLASS: dict[type, str] = {}


def register_message(cls: type, tag: str | None = None) -> str:
    """Register a `msgspec.Struct` subclass for the wire under `tag` (default: ``module:QualName``).

    Both processes must import the module that registers the class. Re-registering the same class is a no-op.
    """
    if not (isinstance(cls, type) and issubclass(cls, msgspec.Struct)):
        raise CodecError(f"{cls!r} is not a msgspec.Struct subclass; only Structs may be registered messages")
    tag = tag or f"{cls.__module__}:{cls.__qualname__}"
    known = _BY_TAG.get(tag)
    if known is not None and known is not cls:
        raise CodecError(f"message tag {tag!r} already names {known!r}; pass a distinct tag= for {cls!r}")
    _BY_TAG[tag] = cls
    _BY_CLASS[cls] = tag
    return tag


def message(cls: _T | None = None, *, tag: str | None = None) -> Any:
    """Class decorator: ``@message`` or ``@message(tag="x")`` registers a Struct as a wire message."""
    if cls is None:
        return lambda c: (register_message(c, tag), c)[1]
    register_message(cls, tag)
    return cls


def tag_of(cls: type) -> str | None:
    """The tag of a registered class, ``None`` for anything else."""
    return _BY_CLASS.get(cls)


def registered_class(tag: str) -> type:
    cls = _BY_TAG.get(tag)
    if cls is None:
        raise CodecError(
            f"unknown message tag {tag!r}: decorate the class with @actors.message and import its module "
            "in both processes"
        )
    return cls
