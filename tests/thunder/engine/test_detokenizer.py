"""Incremental detokenization: streamed pieces add up to a full decode; stop strings cut and hold back."""

from __future__ import annotations

from thunder.engine import IncrementalDetokenizer
from thunder.models import Tokenizer

TEXT = "Crème brûlée costs 12€ 🍮 — naïve café, 日本語 too."


def stream(tokenizer: Tokenizer, text: str, stop: tuple[str, ...] = ()) -> tuple[list[str], str | None]:
    detok = IncrementalDetokenizer(tokenizer, stop)
    pieces, matched = [], None
    for token in tokenizer.encode(text, add_special_tokens=False):
        matched = detok.add(token)
        if matched:
            break
        pieces.append(detok.take_new_text(finished=False))
    pieces.append(detok.take_new_text(finished=True))
    return pieces, matched


def test_streamed_pieces_equal_the_full_decode_with_multibyte_characters(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode(TEXT, add_special_tokens=False)
    pieces, matched = stream(tokenizer, TEXT)
    assert matched is None
    assert "".join(pieces) == tokenizer.decode(ids) == TEXT
    assert all("\ufffd" not in p for p in pieces)  # never a half character


def test_special_tokens_are_skipped(tokenizer: Tokenizer) -> None:
    detok = IncrementalDetokenizer(tokenizer)
    for token in tokenizer.encode("Hi<|im_end|>", add_special_tokens=False):
        detok.add(token)
    assert detok.take_new_text(finished=True) == "Hi"


def test_stop_string_cuts_the_text_and_is_never_streamed(tokenizer: Tokenizer) -> None:
    pieces, matched = stream(tokenizer, "The answer is 42. STOP here please", stop=("STOP", "zzz"))
    assert matched == "STOP"
    assert "".join(pieces) == "The answer is 42. "
    assert not any("ST" in p for p in pieces)


def test_stop_string_split_across_tokens_is_found(tokenizer: Tokenizer) -> None:
    pieces, matched = stream(tokenizer, "alpha beta gamma delta", stop=("ta gam",))
    assert matched == "ta gam"
    assert "".join(pieces) == "alpha be"
