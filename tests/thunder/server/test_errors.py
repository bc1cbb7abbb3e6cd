"""Every error path answers OpenAI-shaped JSON with the right status, `param` and `code`.

Driven by the official `openai` client where it can express the request, by raw aiohttp where it cannot
(malformed JSON, wrong types). The backend is `ScriptedBackend`, a test double for the HTTP layer only.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import pytest

from tests.thunder.server.conftest import openai_client, running
from tests.thunder.server.scripted import ScriptedBackend
from thunder.server import RunningServer


async def post(server: RunningServer, path: str, body: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
    kwargs = {"data": body} if isinstance(body, bytes) else {"json": body}
    async with aiohttp.ClientSession() as http, http.post(f"{server.url}{path}", **kwargs) as resp:
        return resp.status, await resp.json(), dict(resp.headers)


def assert_openai_error(body: dict[str, Any], *, param: str | None, code: str | None = None) -> None:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["param"] == param
    assert body["error"]["code"] == code
    assert body["error"]["message"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", 2.5),
        ("temperature", -0.1),
        ("top_p", 0.0),
        ("top_p", 1.5),
        ("max_tokens", 0),
        ("top_k", -2),
    ],
)
async def test_out_of_range_sampling_value_is_a_400_naming_the_field(
    client: openai.AsyncOpenAI, field: str, value: float
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await client.completions.create(model="scripted-echo", prompt="hi", extra_body={field: value})
    assert info.value.status_code == 400
    assert info.value.body["param"] == field
    assert field in info.value.body["message"]


async def test_n_greater_than_one_is_refused_saying_so(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(
            model="scripted-echo", messages=[{"role": "user", "content": "a"}], n=2
        )
    assert info.value.body["param"] == "n"
    assert "only n=1" in info.value.body["message"]


async def test_unknown_model_is_404_model_not_found(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        await client.completions.create(model="gpt-9", prompt="hi")
    assert info.value.body["code"] == "model_not_found"
    assert "gpt-9" in info.value.body["message"] and "scripted-echo" in info.value.body["message"]


async def test_prompt_plus_max_tokens_beyond_context_is_context_length_exceeded(
    client: openai.AsyncOpenAI,
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await client.completions.create(model="scripted-echo", prompt="a" * 100, max_tokens=29)
    assert info.value.body["code"] == "context_length_exceeded"
    assert info.value.body["param"] == "prompt"
    assert "128" in info.value.body["message"] and "129" in info.value.body["message"]
    # exactly at the limit is fine
    ok = await client.completions.create(model="scripted-echo", prompt="a" * 100, max_tokens=28)
    assert ok.usage.total_tokens == 128


async def test_chat_prompt_alone_beyond_context_is_rejected(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(
            model="scripted-echo", messages=[{"role": "user", "content": "a" * 200}]
        )
    assert info.value.body["code"] == "context_length_exceeded"
    assert info.value.body["param"] == "messages"


async def test_overload_is_503_with_retry_after() -> None:
    backend = ScriptedBackend(capacity=0)
    async with running(backend) as server:
        status, body, headers = await post(server, "/v1/completions", {"prompt": "hi", "max_tokens": 2})
        assert status == 503
        assert headers["Retry-After"] == "3"  # ceil(2.5 s)
        assert_openai_error(body, param=None, code="overloaded")
        async with openai_client(server) as client:
            with pytest.raises(openai.InternalServerError) as info:
                await client.completions.create(model="scripted-echo", prompt="hi", stream=True)
        assert info.value.status_code == 503
    assert backend.aborted == []  # never admitted, nothing to abort


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/completions", b"{not json", None),
        ("/v1/completions", {"max_tokens": 3}, "prompt"),
        ("/v1/completions", {"prompt": "hi", "max_tokens": "three"}, "max_tokens"),
        ("/v1/completions", {"prompt": ["a", "b"]}, "prompt"),
        ("/v1/completions", {"prompt": []}, "prompt"),
        ("/v1/completions", {"prompt": [1, 300]}, "prompt"),
        ("/v1/completions", {"prompt": "hi", "logprobs": 2}, "logprobs"),
        ("/v1/completions", {"prompt": "hi", "echo": True}, "echo"),
        ("/v1/completions", {"prompt": "hi", "stop": ""}, "stop"),
        ("/v1/completions", {"prompt": "hi", "stream_options": {"include_usage": True}}, "stream_options"),
        ("/v1/completions", {"prompt": "hi", "frequency_penalty": 0.5}, "frequency_penalty"),
        ("/v1/completions", {"prompt": "hi", "repetition_penalty": 1.2}, "repetition_penalty"),
        ("/v1/chat/completions", {"model": "scripted-echo"}, "messages"),
        ("/v1/chat/completions", {"messages": []}, "messages"),
        ("/v1/chat/completions", {"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
            "messages[0].content[0].type",
        ),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "tools": [{}]}, "tools"),
        ("/v1/chat/completions", {"messages": [{"role": "tool", "content": "x"}]}, "messages"),
    ],
)
async def test_bad_body_is_a_400_naming_the_field(
    server: RunningServer, path: str, body: Any, param: str
) -> None:
    status, reply, _ = await post(server, path, body)
    assert status == 400, reply
    assert_openai_error(reply, param=param)
    assert reply["error"]["type"] == "invalid_request_error"


async def test_unknown_route_and_method_are_openai_errors(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/v1/nothing") as resp:
            assert resp.status == 404
            assert_openai_error(await resp.json(), param=None)
        async with http.get(f"{server.url}/v1/completions") as resp:
            assert resp.status == 405
            assert_openai_error(await resp.json(), param=None)


class ExplodingBackend(ScriptedBackend):
    """Fails after two tokens, to exercise the mid-stream and non-stream failure paths."""

    async def generate(self, req):  # type: ignore[override]
        count = 0
        async for delta in super().generate(req):
            if count == 2:
                raise RuntimeError("device actor died")
            count += 1
            yield delta


async def test_backend_failure_is_a_500_or_an_in_band_stream_error() -> None:
    backend = ExplodingBackend()
    async with running(backend) as server:
        status, body, _ = await post(server, "/v1/completions", {"prompt": "hello", "max_tokens": 5})
        assert status == 500
        assert body["error"]["type"] == "server_error" and "device actor died" in body["error"]["message"]
        async with aiohttp.ClientSession() as http:
            payload = {"prompt": "hello", "max_tokens": 5, "stream": True}
            async with http.post(f"{server.url}/v1/completions", json=payload) as resp:
                assert resp.status == 200
                events = [e for e in (await resp.read()).decode().split("\n\n") if e]
    assert "device actor died" in events[-2] and events[-1] == "data: [DONE]"
    assert len(backend.aborted) == 2  # both requests were aborted upstream
