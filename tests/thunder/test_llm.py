"""`thunder.AsyncLLM` as a library inside an asyncio program (colocated mode, device actors in-process)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

import thunder
from thunder.runtime.messages import GetStats

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]
PROMPT = "The capital of France is"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def llm() -> AsyncIterator[thunder.AsyncLLM]:
    steps: list[str] = []
    async with await thunder.AsyncLLM.start(
        mode="colocated", dtype="float32", profile=False, in_process=True, threads_per_device=1,
        kv_cache_gib=0.25, on_progress=steps.append,
    ) as llm:
        assert any("probing" in s for s in steps)
        yield llm


async def test_plan_is_colocated_over_two_devices(llm: thunder.AsyncLLM) -> None:
    assert [g.phase for g in llm.plan.groups] == ["colocated", "colocated"]
    assert sum(llm.plan.routing.arrival.values()) == pytest.approx(1.0)
    assert llm.runtime.ready


async def test_generate_greedy_is_deterministic_and_spread_over_replicas(llm: thunder.AsyncLLM) -> None:
    results = [await llm.generate(PROMPT, max_tokens=8, temperature=0) for _ in range(2)]
    assert results[0].text == results[1].text and results[0].text.strip()
    assert results[0].finish_reason == "length" and len(results[0].token_ids) == 8
    assert results[0].num_prompt_tokens == len(llm.encode(PROMPT))
    served = {g: llm.runtime.live.decode_tokens.get(g, 0) for g in llm.runtime.devices}
    assert all(n > 0 for n in served.values())  # 50/50 ratios: both colocated replicas generated


async def test_stream_chat_messages_and_token_ids(llm: thunder.AsyncLLM) -> None:
    messages = [{"role": "user", "content": "Say hello."}]
    ids = llm.encode(messages)
    assert ids == llm.encode(ids)  # token ids pass through unchanged
    deltas = [d async for d in llm.stream(messages, max_tokens=6, temperature=0)]
    assert deltas[-1].finished and deltas[-1].num_output_tokens == sum(len(d.token_ids) for d in deltas)
    whole = await llm.generate(ids, max_tokens=6, temperature=0)
    assert "".join(d.text for d in deltas) == whole.text


async def test_leaving_a_stream_early_aborts_and_frees_pages(llm: thunder.AsyncLLM) -> None:
    stream = llm.stream(PROMPT, max_tokens=500, temperature=0, ignore_eos=True)
    async for _ in stream:
        break
    await stream.aclose()
    stats = [await ref.ask(GetStats()) for ref in llm.runtime.devices.values()]
    for _ in range(200):
        if all(s.running == 0 and s.kv_pages_used == 0 for s in stats):
            break
        await asyncio.sleep(0.05)  # the abort reaches the device's engine at its next step
        stats = [await ref.ask(GetStats()) for ref in llm.runtime.devices.values()]
    assert [(s.running, s.kv_pages_used) for s in stats] == [(0, 0), (0, 0)]
    assert len(llm.runtime.streams) == 0


async def test_bad_sampling_is_rejected_before_admission(llm: thunder.AsyncLLM) -> None:
    with pytest.raises(ValueError, match="temperature"):
        await llm.generate(PROMPT, temperature=-1.0)
    assert len(llm.runtime.streams) == 0


async def test_shutdown_is_idempotent_and_refuses_new_work(llm: thunder.AsyncLLM) -> None:
    # NOTE: runs last in this module (the fixture's own exit then shuts down a closed runtime: a no-op).
    await llm.shutdown()
    await llm.shutdown()
    assert llm.runtime.closed and not llm.runtime.ready
    with pytest.raises(RuntimeError, match="shut down"):
        await llm.generate(PROMPT, max_tokens=2)
