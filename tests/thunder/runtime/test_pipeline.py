"""PP=2 on the real SmolLM2: two device processes of 15 layers each, hidden states stage to stage as raw
tensor frames, continuous batching on the leader — greedy tokens EQUAL the single-device engine's."""

from __future__ import annotations

import asyncio
import os

import pytest

from actors import ActorSystem
from thunder.engine import ConfigError, EngineConfig, LLMEngine, SamplingParams
from thunder.runtime.pipeline import start_pipeline

PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time, in a land far away,",
           "1, 2, 3, 4,", "Water boils at"]
GREEDY = SamplingParams(max_tokens=16, temperature=0)


@pytest.mark.slow
async def test_pp2_smollm2_greedy_equals_single_device() -> None:
    single = LLMEngine(EngineConfig(dtype="float32", kv_cache_gib=0.25, num_threads=1))
    expected = [c.token_ids for c in single.generate(PROMPTS, GREEDY)]
    async with ActorSystem(node_id="pp-test") as system:
        engine, infos = await start_pipeline(system, layer_split=[15, 15], dtype="float32",
                                             max_num_batched_tokens=24)  # chunked prefill across steps
        assert [i.layer_range for i in infos] == [(0, 15), (15, 30)]
        assert len({i.pid for i in infos} | {os.getpid()}) == 3  # two device processes + this one
        got = await asyncio.to_thread(engine.generate, PROMPTS, GREEDY)
        assert [c.token_ids for c in got] == expected
        assert engine.stats().kv_pages_used == 0 and engine.stats().steps > GREEDY.max_tokens


async def test_layer_split_must_cover_the_model() -> None:
    async with ActorSystem(node_id="pp-bad") as system:
        with pytest.raises(ConfigError, match=r"layer_split=\[15, 14\]"):
            await start_pipeline(system, layer_split=[15, 14])
