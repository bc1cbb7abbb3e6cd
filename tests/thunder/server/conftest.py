"""Fixtures: a real aiohttp server on 127.0.0.1 (free port) around a backend, and the official openai client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest

from tests.thunder.server.scripted import ScriptedBackend
from thunder.metrics import ServingMetrics
from thunder.server import Backend, RunningServer, create_app, start


@pytest.fixture
def scripted() -> ScriptedBackend:
    return ScriptedBackend()


@pytest.fixture
def metrics(scripted: ScriptedBackend) -> ServingMetrics:
    return ServingMetrics(model_name=scripted.model_name)


@pytest.fixture
async def server(scripted: ScriptedBackend, metrics: ServingMetrics) -> AsyncIterator[RunningServer]:
    async with running(scripted, metrics) as srv:
        yield srv


@pytest.fixture
async def client(server: RunningServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai_client(server) as c:
        yield c


class running:
    """`async with running(backend) as server:` — the app served on a free port, closed on exit."""

    def __init__(self, backend: Backend, metrics: ServingMetrics | None = None) -> None:
        self.app = create_app(backend, served_model_name=backend.model_name, metrics=metrics)

    async def __aenter__(self) -> RunningServer:
        self.server = await start(self.app, "127.0.0.1", 0)
        return self.server

    async def __aexit__(self, *exc: object) -> None:
        await self.server.close()


def openai_client(server: RunningServer) -> openai.AsyncOpenAI:
    # NOTE: max_retries=0, or the client would silently retry the 503s the tests provoke.
    return openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)
