"""Errors raised by the planner. Each message names the bad value and how to fix it."""

from __future__ import annotations


class SpecError(ValueError):
    """A cluster / model / workload / budget spec is invalid (the message names the field and the fix)."""


class PlanError(RuntimeError):
    """No feasible plan exists for the inputs (the message says which constraint failed)."""


__all__ = ["PlanError", "SpecError"]
