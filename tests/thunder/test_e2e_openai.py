"""`thunder run`'s stack end to end: real device processes (1 prefill + 1 decode, SmolLM2-135M, float32 on
CPU), real KV handoffs between them, the aiohttp server, driven by the official openai client.

Greedy outputs must EQUAL the offline engine's (KV sent as fp32 so the decode side continues from the exact
prefill state); an int4 handoff must actually cross the wire at >= 3.5x fewer bytes than fp16; a role flip
keeps serving on the same processes; a client disconnect frees the pages on both devices.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
import pytest_asyncio

from planner import Routing
from thunder.engine import EngineConfig, LLMEngine, SamplingParams
from thunder.metrics import ServingMetrics
from thunder.runtime import ActorBackend, Runtime, RuntimeConfig, start_runtime
from thunder.runtime.messages import GetInfo, GetStats
from thunder.server import RunningServer, create_app, start

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]
MODEL = "smollm2-135m-instruct"
PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time", "1, 2, 3, 4,"]
QUESTIONS = [f"Name {i + 1} animal{'s' if i else ''}." for i in range(16)]
MAX_TOKENS = 12


class Served:
    def __init__(self, runtime: Runtime, server: RunningServer, offline: dict[str, list[str]]) -> None:
        self.runtime, self.server, self.offline = runtime, server, offline

    def client(self) -> openai.AsyncOpenAI:
        # NOTE: max_retries=0 so a 503 or a dropped stream is seen, not silently retried.
        return openai.AsyncOpenAI(base_url=f"{self.server.url}/v1", api_key="unused", max_retries=0, timeout=120)

    async def get(self, path: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as http, http.get(f"{self.server.url}{path}") as resp:
            return resp.status, await resp.text()


def _offline() -> dict[str, list[str]]:
    engine = LLMEngine(EngineConfig(model=MODEL, dtype="float32", kv_cache_gib=0.25, num_threads=1))
    greedy = SamplingParams(max_tokens=MAX_TOKENS, temperature=0)
    tok = engine.tokenizer
    chats = [tok.encode(tok.apply_chat_template([{"role": "user", "content": q}])) for q in QUESTIONS]  # type: ignore[arg-type]
    return {"completions": [c.text for c in engine.generate(PROMPTS, greedy)],
            "chat": [c.text for c in engine.generate(chats, greedy)]}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served() -> AsyncIterator[Served]:
    config = RuntimeConfig(model=MODEL, dtype="float32", kv_transfer_dtype="fp32", profile=False,
                           threads_per_device=1, kv_cache_gib=0.25)
    metrics = ServingMetrics(model_name=MODEL)
    # The offline reference loads in a thread while the device processes load.
    runtime, offline = await asyncio.gather(start_runtime(config, metrics=metrics), asyncio.to_thread(_offline))
    server = await start(create_app(ActorBackend(runtime), metrics=metrics), "127.0.0.1", 0)
    try:
        yield Served(runtime, server, offline)
    finally:
        await server.close()
        await runtime.shutdown()


def greedy(**extra: Any) -> dict[str, Any]:
    return {"max_tokens": MAX_TOKENS, "temperature": 0, **extra}


async def test_plan_is_one_prefill_one_decode_in_two_processes(served: Served) -> None:
    rt = served.runtime
    assert sorted(g.phase for g in rt.plan.groups) == ["decode", "prefill"]
    pids = {info.pid for info in rt.infos.values()}
    assert len(pids) == 2 and all(info.address is not None for info in rt.infos.values())
    assert rt.ready and rt.live.relayed_handoffs == 0  # probes went device to device


async def test_completions_equal_offline_greedy(served: Served) -> None:
    async with served.client() as client:
        outs = await asyncio.gather(*(client.completions.create(model=MODEL, prompt=p, **greedy()) for p in PROMPTS))
    assert [o.choices[0].text for o in outs] == served.offline["completions"]
    assert all(o.usage is not None and o.usage.completion_tokens <= MAX_TOKENS for o in outs)


async def test_chat_and_stream_equal_offline_greedy(served: Served) -> None:
    async with served.client() as client:
        chat = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": QUESTIONS[0]}], **greedy())
        stream = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": QUESTIONS[1]}], stream=True,
            stream_options={"include_usage": True}, **greedy())
        chunks = [c async for c in stream]
    assert chat.choices[0].message.content == served.offline["chat"][0]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == served.offline["chat"][1]
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens > 1 and usage.prompt_tokens > 10


async def test_16_concurrent_streams_equal_offline_greedy(served: Served) -> None:
    async def one(client: openai.AsyncOpenAI, q: str) -> str:
        stream = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": q}], stream=True, **greedy())
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    async with served.client() as client:
        texts = await asyncio.gather(*(one(client, q) for q in QUESTIONS))
    assert texts == served.offline["chat"]


async def test_bad_inputs_get_openai_errors(served: Served) -> None:
    async with served.client() as client:
        with pytest.raises(openai.BadRequestError) as bad:
            await client.completions.create(model=MODEL, prompt="x", max_tokens=4, temperature=-1)
        assert bad.value.body["param"] == "temperature"  # type: ignore[index]
        with pytest.raises(openai.NotFoundError):
            await client.completions.create(model="no-such-model", prompt="x", max_tokens=4)
        with pytest.raises(openai.BadRequestError) as long:
            await client.completions.create(model=MODEL, prompt="x", max_tokens=served.runtime.max_model_len + 1)
        assert long.value.code == "context_length_exceeded"


async def test_int4_handoff_crosses_the_wire_compressed(served: Served) -> None:
    rt = served.runtime
    before_wire, before_fp16 = rt.live.kv_wire_bytes, rt.live.kv_fp16_bytes
    assert await rt.set_kv_transfer_dtype("int4") == "fp32"
    try:
        async with served.client() as client:
            out = await client.completions.create(model=MODEL, prompt=PROMPTS[0], **greedy())
    finally:
        await rt.set_kv_transfer_dtype("fp32")
    wire, fp16 = rt.live.kv_wire_bytes - before_wire, rt.live.kv_fp16_bytes - before_fp16
    assert wire > 0 and fp16 / wire >= 3.5
    # The first token is sampled on the prefill device before compression: it must match exactly.
    text = out.choices[0].text
    first_word = served.offline["completions"][0].split()[0]
    assert text.split()[0] == first_word
    status, body = await served.get("/metrics")
    sent = [line for line in body.splitlines() if line.startswith("thunder:kv_transfer_bytes_total{")]
    assert status == 200 and sent and float(sent[0].rsplit(" ", 1)[1]) >= wire


async def test_role_flip_keeps_serving_on_the_same_processes(served: Served) -> None:
    rt = served.runtime
    original = rt.plan
    p, d = original.groups_in("prefill")[0].id, original.groups_in("decode")[0].id
    pids = {g: (await rt.devices[g].ask(GetInfo())).pid for g in (p, d)}
    steps = {g: (await rt.devices[g].ask(GetStats())).steps for g in (p, d)}
    flipped = _replace_phases(original, {p: "decode", d: "prefill"}, Routing(arrival={d: 1.0}, handoff={d: {p: 1.0}}))
    await rt.apply_plan(flipped)
    try:
        async with served.client() as client:
            out = await client.completions.create(model=MODEL, prompt=PROMPTS[1], **greedy())
        assert out.choices[0].text == served.offline["completions"][1]
        for g in (p, d):
            info = await rt.devices[g].ask(GetInfo())
            assert info.pid == pids[g] and info.role == flipped.group(g).phase  # same process, new role
            assert (await rt.devices[g].ask(GetStats())).steps > steps[g]  # same engine: counters kept
    finally:
        await rt.apply_plan(original)


async def test_client_disconnect_aborts_and_frees_pages(served: Served) -> None:
    rt = served.runtime
    async with served.client() as client:
        stream = await client.completions.create(model=MODEL, prompt=PROMPTS[2], max_tokens=400, temperature=0,
                                                 stream=True, extra_body={"ignore_eos": True})
        got = 0
        async for _ in stream:
            got += 1
            if got == 3:
                break
        await stream.close()
    for _ in range(300):
        stats = [await ref.ask(GetStats()) for ref in rt.devices.values()]
        state = await rt.router_state()
        if all(s.running == 0 and s.waiting == 0 and s.kv_pages_used == 0 for s in stats) and not state["in_flight"]:
            break
        await asyncio.sleep(0.1)
    assert [(s.running, s.kv_pages_used) for s in stats] == [(0, 0), (0, 0)]
    assert state["in_flight"] == 0 and len(rt.streams) == 0


async def test_full_queue_answers_503_with_retry_after(served: Served) -> None:
    app = create_app(ActorBackend(served.runtime, max_pending=1), metrics=ServingMetrics(model_name=MODEL))
    small = await start(app, "127.0.0.1", 0)
    try:
        body = {"model": MODEL, "prompt": PROMPTS[3], "max_tokens": 40, "temperature": 0, "stream": True,
                "ignore_eos": True}
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{small.url}/v1/completions", json=body) as first:
                assert first.status == 200
                await first.content.readline()  # the first SSE event: this request holds the only slot
                async with http.post(f"{small.url}/v1/completions", json=body) as second:
                    error = await second.json()
                    assert second.status == 503 and int(second.headers["Retry-After"]) >= 1
                    assert "limit 1" in error["error"]["message"]
    finally:
        await small.close()


async def test_health_plan_and_metrics(served: Served) -> None:
    status, _ = await served.get("/health")
    assert status == 200
    status, body = await served.get("/v1/plan")
    assert status == 200 and '"phase": "prefill"' in body.replace('":"', '": "')
    status, body = await served.get("/metrics")
    assert status == 200
    prefill = served.runtime.plan.groups_in("prefill")[0].id
    assert f'thunder:prefill_tokens_total{{replica="{prefill}",role="prefill"}}' in body
    assert "thunder:num_requests_running{" in body and "thunder:time_to_first_token_seconds_count" in body


def _replace_phases(plan: Any, phases: dict[str, str], routing: Routing) -> Any:
    import dataclasses

    groups = tuple(g.with_phase(phases.get(g.id, g.phase)) for g in plan.groups)
    return dataclasses.replace(plan, groups=groups, routing=routing)
