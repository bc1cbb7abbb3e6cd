"""planner: pure planning for heterogeneous GPU pools (no torch, no asyncio)."""

__all__: list[str] = []
