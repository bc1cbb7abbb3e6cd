"""The server in front of a REAL engine (SmolLM2-135M-Instruct, float32, CPU), driven by the openai client.

Served greedy outputs must equal the offline engine's greedy outputs token for token (compared as text and
token counts), for completions, chat, and 16 concurrent streams; a disconnect must free the engine's pages.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import aiohttp
import openai
import pytest

from tests.thunder.server.conftest import openai_client, running
from tests.thunder.server.engine_backend import EngineBackend
from thunder.engine import EngineConfig, LLMEngine, SamplingParams
from thunder.server import RunningServer

pytestmark = pytest.mark.slow
MODEL = "smollm2-135m-instruct"
PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time", "1, 2, 3, 4,"]
QUESTIONS = [f"Name {i + 1} colour{'s' if i else ''}." for i in range(16)]
MAX_TOKENS = 12


@pytest.fixture(scope="module")
def engine() -> Iterator[LLMEngine]:
    # NOTE: one torch thread: the 2 shared cores are oversubscribed otherwise and the test runs ~10x slower.
    yield LLMEngine(
        EngineConfig(model=MODEL, dtype="float32", kv_cache_gib=0.25, max_model_len=512, num_threads=1)
    )


@pytest.fixture(scope="module")
def offline(engine: LLMEngine) -> dict[str, list[tuple[str, int]]]:
    """Greedy (text, number of tokens) per prompt from the offline engine API, before any serving."""
    greedy = SamplingParams(max_tokens=MAX_TOKENS, temperature=0)
    chats = [engine.tokenizer.apply_chat_template([{"role": "user", "content": q}]) for q in QUESTIONS]
    chat_ids = [engine.tokenizer.encode(c) for c in chats]  # type: ignore[arg-type]
    return {
        "completions": [(c.text, len(c.token_ids)) for c in engine.generate(PROMPTS, greedy)],
        "chat": [(c.text, len(c.token_ids)) for c in engine.generate(chat_ids, greedy)],
    }


@pytest.fixture
async def served(engine: LLMEngine) -> AsyncIterator[tuple[RunningServer, EngineBackend]]:
    backend = EngineBackend(engine, MODEL)
    async with running(backend) as server:
        yield server, backend
    await backend.close()


async def test_completions_equal_offline_greedy(served, offline) -> None:  # type: ignore[no-untyped-def]
    server, _ = served
    async with openai_client(server) as client:
        outs = await asyncio.gather(
            *(
                client.completions.create(model=MODEL, prompt=p, max_tokens=MAX_TOKENS, temperature=0)
                for p in PROMPTS
            )
        )
    assert [(o.choices[0].text, o.usage.completion_tokens) for o in outs] == offline["completions"]


async def test_sixteen_concurrent_chat_streams_equal_offline_greedy(served, offline) -> None:  # type: ignore[no-untyped-def]
    server, _ = served

    async def one(client: openai.AsyncOpenAI, question: str) -> tuple[str, int]:
        stream = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": question}], max_tokens=MAX_TOKENS, temperature=0,
            stream=True, stream_options={"include_usage": True},
        )  # fmt: skip
        chunks = [c async for c in stream]
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), chunks[
            -1
        ].usage.completion_tokens

    async with openai_client(server) as client:
        got = await asyncio.gather(*(one(client, q) for q in QUESTIONS))
    assert got == offline["chat"]


async def test_health_probes_a_real_generation_and_disconnect_frees_pages(served, engine: LLMEngine) -> None:  # type: ignore[no-untyped-def]
    server, _ = served
    steps = engine.stats().steps
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/health") as resp:
            assert resp.status == 200
        assert engine.stats().steps > steps  # the probe ran the model
        body = {
            "model": MODEL,
            "prompt": "Tell me a long story.",
            "max_tokens": 400,
            "stream": True,
            "ignore_eos": True,
        }
        resp = await http.post(f"{server.url}/v1/completions", json=body)
        await resp.content.readuntil(b"\n\n")
        assert engine.stats().kv_pages_used > 0
        resp.close()
        steps_at_disconnect = engine.stats().steps
    for _ in range(500):
        if engine.stats().kv_pages_used == 0 and not engine.has_unfinished():
            break
        await asyncio.sleep(0.02)
    assert engine.stats().running == 0
    assert engine.stats().steps - steps_at_disconnect < 100  # aborted, not run to its 400 tokens
    assert engine.stats().kv_pages_used == 0  # prefix-cache pages are unreferenced, not used
