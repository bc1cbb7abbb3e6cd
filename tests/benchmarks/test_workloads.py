"""benchmarks/workloads.py: the seeded English-text workload every throughput benchmark shares."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.workloads import Workload, _looks_like_prose, build_offline_workload, english_paragraphs


class WordTokenizer:
    """One token per whitespace-separated word: a tokenizer whose lengths are easy to reason about."""

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}
        self.words: list[str] = []

    def encode(self, text: str) -> list[int]:
        ids = []
        for word in text.split():
            if word not in self.vocab:
                self.vocab[word] = len(self.words)
                self.words.append(word)
            ids.append(self.vocab[word])
        return ids

    def decode(self, ids: list[int]) -> str:
        return " ".join(self.words[i] for i in ids)


def build(**kwargs: int) -> Workload:
    tok = WordTokenizer()
    return build_offline_workload(tok.encode, tok.decode, **kwargs)


def test_corpus_is_prose_from_the_standard_library() -> None:
    paragraphs = english_paragraphs()
    assert len(paragraphs) >= 256, "the 256-request variant needs one paragraph per request"
    assert len(set(paragraphs)) == len(paragraphs)
    for text in paragraphs:
        assert len(text.split()) >= 20 and "\n" not in text and ">>>" not in text


def test_prose_filter_rejects_code_and_short_lines() -> None:
    assert not _looks_like_prose(">>> import os; os.path.join(a, b) " * 5)
    assert not _looks_like_prose("Too short to be a paragraph.")
    assert not _looks_like_prose("x = {'a': [1, 2], 'b': (3, 4)} if y else z[0] " * 4)
    assert _looks_like_prose(
        "Return a new list containing all items from the iterable in ascending order. A custom key function "
        "can be supplied to customize the sort order, and the reverse flag can be set to request descending order."
    )


def test_lengths_counts_and_seeded_determinism() -> None:
    workload = build(num_requests=64, min_prompt_tokens=16, max_prompt_tokens=64, max_new_tokens=64, seed=0)
    lengths = [len(p) for p in workload.prompt_token_ids]
    assert workload.num_requests == 64 and workload.max_new_tokens == 64
    assert min(lengths) >= 16 and max(lengths) <= 64
    assert len(set(lengths)) > 20, "lengths are spread over the range, not one value"
    assert workload == build(num_requests=64, seed=0)
    assert workload.prompt_token_ids != build(num_requests=64, seed=1).prompt_token_ids
    assert len(set(workload.prompt_texts)) == 64, "each request starts from a different paragraph"


def test_prompts_are_cut_from_the_corpus_text() -> None:
    corpus = " ".join(english_paragraphs())
    workload = build(num_requests=16, seed=3)
    for text in workload.prompt_texts:
        assert text in corpus


def test_round_trip_through_json(tmp_path: Path) -> None:
    workload = build(num_requests=8, seed=5)
    workload.save(tmp_path / "w.json")
    assert Workload.load(tmp_path / "w.json") == workload


def test_bad_arguments_name_the_value_and_the_fix() -> None:
    with pytest.raises(ValueError, match="min_prompt_tokens=70.*try 16 and 64"):
        build(min_prompt_tokens=70, max_prompt_tokens=64)
    with pytest.raises(ValueError, match="num_requests=100000: the corpus has only"):
        build(num_requests=100_000)


def test_real_tokenizer_gives_exact_lengths() -> None:
    tokenizers = pytest.importorskip("tokenizers")
    from thunder.models import load_model_dir

    tok = tokenizers.Tokenizer.from_file(str(load_model_dir("smollm2-135m-instruct") / "tokenizer.json"))
    workload = build_offline_workload(
        lambda s: tok.encode(s, add_special_tokens=False).ids, tok.decode, num_requests=64, seed=0
    )
    lengths = [len(p) for p in workload.prompt_token_ids]
    assert 16 <= min(lengths) and max(lengths) <= 64
    assert 64 * 30 < workload.num_prompt_tokens < 64 * 50  # uniform 16..64 has mean 40
    assert all(text and text[0].isupper() for text in workload.prompt_texts)
