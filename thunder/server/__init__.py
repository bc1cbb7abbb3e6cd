"""The OpenAI-compatible HTTP server (aiohttp) in front of a `Backend`."""

from thunder.server.app import create_app
from thunder.server.backend import (
    Backend,
    BackendState,
    GenerateRequest,
    Overloaded,
    ReplicaState,
    TokenDelta,
    Tokenizer,
)
from thunder.server.errors import ApiError
from thunder.server.runner import RunningServer, serve, start

__all__ = [
    "ApiError",
    "Backend",
    "BackendState",
    "GenerateRequest",
    "Overloaded",
    "ReplicaState",
    "RunningServer",
    "TokenDelta",
    "Tokenizer",
    "create_app",
    "serve",
    "start",
]
