"""The OpenAI routes driven by the official `openai` client against a real aiohttp server.

The backend here is `ScriptedBackend`, a test double for the HTTP layer only (exact, known outputs);
`test_engine_backend.py` repeats the key checks against a real LLMEngine.
"""

from __future__ import annotations

import asyncio

import aiohttp
import msgspec
import openai

from tests.thunder.server.scripted import ByteTokenizer, ScriptedBackend, scripted_output
from thunder.server import RunningServer

TOK = ByteTokenizer()


def expected_text(prompt: str, max_tokens: int) -> str:
    return TOK.decode(scripted_output(TOK.encode(prompt), max_tokens))


async def test_models_lists_the_served_model(client: openai.AsyncOpenAI) -> None:
    models = await client.models.list()
    assert [m.id for m in models.data] == ["scripted-echo"]
    assert models.data[0].model_extra["max_model_len"] == ScriptedBackend.max_model_len


async def test_completion_returns_text_and_usage(
    client: openai.AsyncOpenAI, scripted: ScriptedBackend
) -> None:
    out = await client.completions.create(model="scripted-echo", prompt="hello", max_tokens=7, temperature=0)
    assert out.object == "text_completion"
    assert out.choices[0].text == expected_text("hello", 7) == "hellohe"
    assert out.choices[0].finish_reason == "length"
    assert (out.usage.prompt_tokens, out.usage.completion_tokens, out.usage.total_tokens) == (5, 7, 12)
    params = scripted.requests[0].params
    assert (params.max_tokens, params.temperature, params.top_k) == (7, 0.0, 0)


async def test_completion_accepts_token_ids_and_defaults_to_16_tokens(
    client: openai.AsyncOpenAI, scripted: ScriptedBackend
) -> None:
    out = await client.completions.create(model="scripted-echo", prompt=[104, 105])
    assert out.choices[0].text == "hi" * 8
    assert scripted.requests[0].prompt_token_ids == [104, 105]


async def test_sampling_fields_reach_the_backend(
    client: openai.AsyncOpenAI, scripted: ScriptedBackend
) -> None:
    await client.completions.create(
        model="scripted-echo",
        prompt="abc",
        max_tokens=3,
        temperature=0.7,
        top_p=0.9,
        seed=11,
        stop="zz",
        extra_body={"top_k": 5, "ignore_eos": True, "stop_token_ids": [7]},
    )
    p = scripted.requests[0].params
    assert (p.temperature, p.top_p, p.top_k, p.seed, p.ignore_eos) == (0.7, 0.9, 5, 11, True)
    assert list(p.stop) == ["zz"] and list(p.stop_token_ids) == [7]


async def test_stop_token_finishes_with_reason_stop(client: openai.AsyncOpenAI) -> None:
    out = await client.completions.create(
        model="scripted-echo", prompt="abcd", max_tokens=10, extra_body={"stop_token_ids": [ord("c")]}
    )
    assert out.choices[0].text == "ab"
    assert out.choices[0].finish_reason == "stop"
    assert out.usage.completion_tokens == 3


async def test_chat_applies_the_template_and_honours_max_completion_tokens(
    client: openai.AsyncOpenAI, scripted: ScriptedBackend
) -> None:
    messages = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
    ]
    out = await client.chat.completions.create(
        model="scripted-echo", messages=messages, max_completion_tokens=4, max_tokens=99
    )
    rendered = TOK.encode("<system>S\n<user>Hi\n<assistant>")
    assert scripted.requests[0].prompt_token_ids == rendered
    assert out.object == "chat.completion"
    assert out.choices[0].message.role == "assistant"
    assert out.choices[0].message.content == "<sys"
    assert out.usage.prompt_tokens == len(rendered) and out.usage.completion_tokens == 4


async def test_chat_default_max_tokens_is_the_rest_of_the_context(
    client: openai.AsyncOpenAI, scripted: ScriptedBackend
) -> None:
    await client.chat.completions.create(model="scripted-echo", messages=[{"role": "user", "content": "x"}])
    req = scripted.requests[0]
    assert req.params.max_tokens == ScriptedBackend.max_model_len - len(req.prompt_token_ids)


async def test_chat_stream_with_usage(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="scripted-echo",
        messages=[{"role": "user", "content": "ok"}],
        max_tokens=5,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "<user"
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5
    assert all(c.usage is None for c in chunks[:-1])


async def test_completion_stream_is_sse_with_done(server: RunningServer) -> None:
    body = {"model": "scripted-echo", "prompt": "xyz", "max_tokens": 4, "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    async with aiohttp.ClientSession() as http, http.post(f"{server.url}/v1/completions", json=body) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        raw = (await resp.read()).decode()
    events = [e for e in raw.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    chunks = [msgspec.json.decode(e.removeprefix("data: ")) for e in events[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == "xyzx"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 4
    assert {c["id"] for c in chunks} == {resp.headers["X-Request-Id"]}


async def test_sixteen_concurrent_streams_each_get_their_own_text(client: openai.AsyncOpenAI) -> None:
    async def one(i: int) -> str:
        stream = await client.completions.create(
            model="scripted-echo", prompt=f"p{i:02d}-", max_tokens=12, stream=True
        )
        return "".join([c.choices[0].text async for c in stream])

    texts = await asyncio.gather(*(one(i) for i in range(16)))
    assert texts == [expected_text(f"p{i:02d}-", 12) for i in range(16)]


async def test_model_may_be_omitted(server: RunningServer) -> None:
    body = {"prompt": "ab", "max_tokens": 2}
    async with aiohttp.ClientSession() as http, http.post(f"{server.url}/v1/completions", json=body) as resp:
        assert resp.status == 200
        assert (await resp.json())["choices"][0]["text"] == "ab"


async def test_the_exact_vllm_bench_serve_payload_is_served(server: RunningServer) -> None:
    """`vllm bench serve --backend openai` sends these fields (vllm/benchmarks/lib/endpoint_request_func.py)."""
    body = {"model": "scripted-echo", "prompt": "bench", "repetition_penalty": 1.0, "max_tokens": 9,
            "logprobs": None, "stream": True, "stream_options": {"include_usage": True}, "ignore_eos": True}  # fmt: skip
    async with aiohttp.ClientSession() as http, http.post(f"{server.url}/v1/completions", json=body) as resp:
        assert resp.status == 200
        events = [e.removeprefix("data: ") for e in (await resp.read()).decode().split("\n\n") if e]
    assert events[-1] == "[DONE]"
    assert msgspec.json.decode(events[-2])["usage"] == {
        "prompt_tokens": 5,
        "completion_tokens": 9,
        "total_tokens": 14,
    }
