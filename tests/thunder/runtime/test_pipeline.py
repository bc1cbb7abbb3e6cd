"""PP=2 on the real SmolLM2: two device processes of 15 layers each, hidden states stage to stage as raw
tensor frames, continuous batching on the leader — greedy tokens EQUAL the single-device engine's. With TP=2
inside stage 0 (gloo): the same, and a request's KV moves out of and into the group (fp32 and int4 wire)."""

from __future__ import annotations

import asyncio
import os

import pytest
import torch

from actors import ActorSystem
from kernels_ext import pack_kv, unpack_kv
from thunder.engine import ConfigError, EngineConfig, LLMEngine, SamplingParams
from thunder.runtime.pipeline import PipelineEngine, start_pipeline

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
        assert [[i.layer_range for i in s] for s in infos] == [[(0, 15)], [(15, 30)]]
        assert len({s[0].pid for s in infos} | {os.getpid()}) == 3  # two device processes + this one
        got = await asyncio.to_thread(engine.generate, PROMPTS, GREEDY)
        assert [c.token_ids for c in got] == expected
        assert engine.stats().kv_pages_used == 0 and engine.stats().steps > GREEDY.max_tokens


async def test_layer_split_must_cover_the_model() -> None:
    async with ActorSystem(node_id="pp-bad") as system:
        with pytest.raises(ConfigError, match=r"layer_split=\[15, 14\]"):
            await start_pipeline(system, layer_split=[15, 14])


def _prefill(engine: LLMEngine | PipelineEngine, rid: str, ids: list[int]) -> tuple[int, torch.Tensor]:
    """Prefill ``ids`` only; return the first token and the exported prompt KV (pages released)."""
    engine.add_request(rid, ids, GREEDY, prefill_only=True)
    while not (done := [o for o in engine.step() if o.finished]):
        pass
    kv = engine.export_kv(rid)
    engine.release(rid)
    return done[0].new_token_ids[-1], kv


def _decode(engine: LLMEngine | PipelineEngine, rid: str, ids: list[int], kv: torch.Tensor, first: int) -> list[int]:
    engine.add_request(rid, ids, GREEDY, kv=kv, first_token=first)
    tokens = [first]
    while True:
        for out in engine.step():
            if out.request_id == rid:
                tokens.extend(out.new_token_ids)
                if out.finished:
                    return tokens


@pytest.mark.slow
async def test_tp2_inside_a_pp_stage_serves_and_hands_kv_out_and_in() -> None:
    single = LLMEngine(EngineConfig(dtype="float32", kv_cache_gib=0.1, num_threads=1))
    expected = [list(c.token_ids) for c in single.generate(PROMPTS, GREEDY)]
    ids = single.tokenizer.encode(PROMPTS[2])
    first, kv_single = _prefill(single, "s", ids)
    async with ActorSystem(node_id="tp-test") as system:
        engine, infos = await start_pipeline(system, layer_split=[13, 17], tp_degrees=[2, 1], dtype="float32",
                                             kv_cache_gib=0.1, max_num_batched_tokens=24, first_stage_here=True)
        assert [[(i.layer_range, i.head_range) for i in s] for s in infos] == [
            [((0, 13), (0, 2)), ((0, 13), (2, 3))], [((13, 30), (0, 3))]]  # SmolLM2's 3 KV heads: 2 + 1
        assert infos[0][0].pid == os.getpid() and len({i.pid for s in infos for i in s}) == 3
        got = await asyncio.to_thread(engine.generate, PROMPTS, GREEDY)
        assert [list(c.token_ids) for c in got] == expected
        # out: the group's assembled KV equals one device's; in: decoding from it gives the same tokens
        first_pp, kv_pp = await asyncio.to_thread(_prefill, engine, "p", ids)
        assert first_pp == first
        torch.testing.assert_close(kv_pp, kv_single, rtol=1e-4, atol=1e-4)
        assert _decode(single, "d", ids, kv_pp, first) == expected[2]
        assert await asyncio.to_thread(_decode, engine, "e", ids, kv_single, first) == expected[2]
        # int4 on the wire: the group decodes the dequantized KV exactly as one device does
        wire = unpack_kv(pack_kv(kv_pp, dtype="int4", group_size=64), out_dtype=torch.float32)
        assert await asyncio.to_thread(_decode, engine, "i", ids, wire, first) == _decode(single, "j", ids, wire, first)
        assert engine.stats().kv_pages_used == 0
