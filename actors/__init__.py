"""actors: a pure-asyncio actor runtime (knows nothing about LLMs)."""

__all__: list[str] = []
