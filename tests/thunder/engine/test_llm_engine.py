"""Engine correctness: paged continuous batching == dense no-cache forward; bf16 agreement; prefix-cache
hits == misses; Hugging Face reference ids; KV export/import == colocated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.thunder.engine.conftest import TEST_THREADS
from thunder.engine import EngineConfig, LLMEngine, SamplingParams
from thunder.models import DenseCausalAttention, LlamaForCausalLM, Tokenizer

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "smollm2_hf_greedy.json"
NEW_TOKENS = 8
TEXT = (
    "The history of astronomy spans thousands of years. Early observers tracked the motion of the Sun, "
    "the Moon and the planets, and built calendars around them. Later, telescopes revealed moons around "
    "Jupiter, the phases of Venus and countless stars in the Milky Way. Today, space telescopes observe "
    "galaxies billions of light years away, and physicists study the origin of the universe itself."
)
LENGTHS = [1, 3, 5, 8, 13, 15, 16, 17, 21, 24, 31, 32, 33, 40, 47, 48, 49, 55, 60, 64, 70, 77, 2, 11]


def mixed_prompts(tokenizer: Tokenizer) -> list[list[int]]:
    ids = tokenizer.encode(TEXT, add_special_tokens=False)
    return [ids[i % 7 : i % 7 + n] for i, n in enumerate(LENGTHS)]


def dense_greedy_check(model: LlamaForCausalLM, prompt: list[int], output: list[int]) -> list[int]:
    """Greedy tokens a dense no-cache forward picks after ``prompt + output[:i]`` for every i.

    Equal to ``output`` exactly when dense greedy decoding would have produced ``output`` token by token;
    one forward over the whole sequence instead of one per token.
    """
    ids = prompt + output[:-1]
    hidden = model(torch.tensor(ids), torch.arange(len(ids)), DenseCausalAttention())
    return model.compute_logits(hidden[len(prompt) - 1 :]).argmax(dim=-1).tolist()


@pytest.fixture(scope="module")
def fp32_outputs(engine_fp32: LLMEngine, tokenizer: Tokenizer) -> list[list[int]]:
    params = SamplingParams(max_tokens=NEW_TOKENS, temperature=0, ignore_eos=True)
    preempted = engine_fp32.stats().num_preemptions
    done = engine_fp32.generate(mixed_prompts(tokenizer), params)
    assert engine_fp32.stats().num_preemptions > preempted, "the small pool should force preemption"
    return [list(c.token_ids) for c in done]


def test_continuous_batch_equals_dense_no_cache_forward_fp32(
    engine_fp32: LLMEngine, tokenizer: Tokenizer, fp32_outputs: list[list[int]]
) -> None:
    prompts = mixed_prompts(tokenizer)
    assert len(prompts) >= 20 and len({len(p) for p in prompts}) >= 20
    model = engine_fp32.runner.model
    for prompt, got in zip(prompts, fp32_outputs, strict=True):
        assert len(got) == NEW_TOKENS
        assert dense_greedy_check(model, prompt, got) == got, f"prompt of {len(prompt)} tokens diverged"


@pytest.mark.slow
def test_bfloat16_agrees_with_float32_on_at_least_95_percent_of_tokens(
    model_dir: Path, tokenizer: Tokenizer, fp32_outputs: list[list[int]]
) -> None:
    engine = LLMEngine(
        EngineConfig(model=str(model_dir), dtype="bfloat16", kv_cache_gib=0.05, num_threads=TEST_THREADS)
    )
    model = engine.runner.model
    prompts = mixed_prompts(tokenizer)
    # Per-token (teacher-forced) agreement: the bf16 model's greedy pick after each float32 prefix. Free
    # generation would count every token after a first near-tie flip as a disagreement.
    forced = [dense_greedy_check(model, p, out) for p, out in zip(prompts, fp32_outputs, strict=True)]
    same = sum(a == b for x, y in zip(forced, fp32_outputs, strict=True) for a, b in zip(x, y, strict=True))
    total = sum(len(x) for x in fp32_outputs)
    assert same / total >= 0.95, f"bf16 agreed with fp32 on {same}/{total} tokens"
    # And the bf16 engine itself (paged, batched) picks what a dense bf16 forward picks, per token.
    params = SamplingParams(max_tokens=NEW_TOKENS, temperature=0, ignore_eos=True)
    bf16 = [list(c.token_ids) for c in engine.generate(prompts, params)]
    forced = [dense_greedy_check(model, p, out) for p, out in zip(prompts, bf16, strict=True)]
    same = sum(a == b for x, y in zip(forced, bf16, strict=True) for a, b in zip(x, y, strict=True))
    assert same / total >= 0.95, f"bf16 engine agreed with dense bf16 on {same}/{total} tokens"


def test_prefix_cache_hits_give_identical_outputs(engine_fp32: LLMEngine, tokenizer: Tokenizer) -> None:
    shared = tokenizer.encode("Prefix caching test. " + TEXT, add_special_tokens=False)[:50]
    prompts = [shared + tokenizer.encode(f" Question {i}: why?", add_special_tokens=False) for i in range(4)]
    params = SamplingParams(max_tokens=8, temperature=0, ignore_eos=True)
    bm = engine_fp32.block_manager
    bm.enable_prefix_caching = False  # the cold run: every prompt computed from scratch
    try:
        hits0 = engine_fp32.stats().prefix_cache_hit_tokens
        cold = [c.token_ids for c in engine_fp32.generate(prompts, params)]
        assert engine_fp32.stats().prefix_cache_hit_tokens == hits0
    finally:
        bm.enable_prefix_caching = True
    engine_fp32.generate(prompts[:1], params)  # registers the shared prefix pages
    warm = [c.token_ids for c in engine_fp32.generate(prompts, params)]
    assert engine_fp32.stats().prefix_cache_hit_tokens - hits0 >= 4 * 48
    assert warm == cold


def test_matches_hugging_face_reference_token_ids(engine_fp32: LLMEngine, tokenizer: Tokenizer) -> None:
    if not FIXTURE.is_file():
        pytest.skip(f"{FIXTURE} not made yet (benchmarks/make_hf_reference.py writes it)")
    fixture = json.loads(FIXTURE.read_text())
    cases = fixture["cases"]
    for case in cases:
        if case.get("chat"):
            messages = [{"role": "system", "content": case["system"]}] if case.get("system") else []
            messages.append({"role": "user", "content": case["prompt"]})
            ours = tokenizer.apply_chat_template(messages, tokenize=True)
        else:
            ours = tokenizer.encode(case["prompt"], add_special_tokens=False)
        assert ours == case["prompt_token_ids"], f"tokenization differs for {case['prompt'][:30]!r}"
    params = SamplingParams(max_tokens=fixture["max_new_tokens"], temperature=0)
    done = engine_fp32.generate([c["prompt_token_ids"] for c in cases], params)
    for case, got in zip(cases, done, strict=True):
        assert list(got.token_ids) == case["output_token_ids"], f"differs from HF for {case['prompt'][:30]!r}"
        assert got.text == case["output_text"]
        assert got.finish_reason == case["finish_reason"]


def test_exported_kv_imported_elsewhere_continues_like_a_colocated_run(
    engine_fp32: LLMEngine, tokenizer: Tokenizer
) -> None:
    prompt = tokenizer.encode("In 1492, Columbus sailed across the ocean and", add_special_tokens=False)
    params = SamplingParams(max_tokens=12, temperature=0, ignore_eos=True)
    colocated = list(engine_fp32.generate([prompt], params)[0].token_ids)

    engine_fp32.add_request("p", prompt, params, prefill_only=True)
    outs = []
    while not outs or not outs[-1].finished:
        outs += [o for o in engine_fp32.step() if o.request_id == "p"]
    assert outs[-1].finish_reason == "prefill_done" and outs[-1].new_token_ids == (colocated[0],)
    kv = engine_fp32.export_kv("p")
    cfg = engine_fp32.model_config
    assert kv.shape == (cfg.num_hidden_layers, 2, len(prompt), cfg.num_key_value_heads, cfg.head_dim)
    assert engine_fp32.stats().held == 1
    engine_fp32.release("p")
    assert engine_fp32.stats().held == 0

    engine_fp32.add_request("d", prompt, params, kv=kv.clone(), first_token=colocated[0])
    decoded: list[int] = []
    text = []
    while engine_fp32.has_unfinished():
        for out in engine_fp32.step():
            decoded += out.new_token_ids
            text.append(out.new_text)
    assert [colocated[0], *decoded] == colocated
    assert "".join(text) == tokenizer.decode(colocated[1:])
