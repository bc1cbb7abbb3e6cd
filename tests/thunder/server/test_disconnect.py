"""A client that goes away mid-request makes the server call `backend.abort(request_id)` (pages freed).

The backend is `ScriptedBackend` (a test double for the HTTP layer only) holding its stream open on a gate.
"""

from __future__ import annotations

import asyncio

import aiohttp

from tests.thunder.server.conftest import running
from tests.thunder.server.scripted import ScriptedBackend


async def wait_for(condition, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_disconnect_while_streaming_aborts_the_request() -> None:
    backend = ScriptedBackend(gate=asyncio.Event(), hold_after=1)  # one token, then silence
    async with running(backend) as server:
        body = {"prompt": "hello", "max_tokens": 50, "stream": True}
        http = aiohttp.ClientSession()
        resp = await http.post(f"{server.url}/v1/completions", json=body)
        first = await resp.content.readuntil(b"\n\n")
        assert first.startswith(b"data: ") and b'"text":"h"' in first
        request_id = resp.headers["X-Request-Id"]
        resp.close()  # drop the connection while the backend waits for its next token
        await http.close()
        await wait_for(lambda: backend.aborted == [request_id])
        assert backend.active == set()


async def test_disconnect_before_the_first_token_aborts_a_non_streamed_request() -> None:
    backend = ScriptedBackend(gate=asyncio.Event(), hold_after=0)  # never produces a token
    async with running(backend) as server, aiohttp.ClientSession() as http:
        task = asyncio.create_task(http.post(f"{server.url}/v1/completions", json={"prompt": "hi"}))
        await wait_for(lambda: len(backend.requests) == 1)
        task.cancel()
        await wait_for(lambda: backend.aborted == [backend.requests[0].request_id])


async def test_finished_requests_are_not_aborted() -> None:
    backend = ScriptedBackend()
    async with running(backend) as server, aiohttp.ClientSession() as http:
        payload = {"prompt": "hi", "max_tokens": 3, "stream": True}
        async with http.post(f"{server.url}/v1/completions", json=payload) as resp:
            assert (await resp.read()).endswith(b"data: [DONE]\n\n")
    assert backend.aborted == []
