"""Incremental detokenization with stop strings (built on `tokenizers.decoders.DecodeStream`).

Text is released as soon as it is valid UTF-8, except the last ``max(len(stop)) - 1`` characters, which are
held back while a stop string could still be completing; on a match the text is cut before the stop string.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from thunder.models import Tokenizer

__all__ = ["IncrementalDetokenizer"]


class IncrementalDetokenizer:
    def __init__(self, tokenizer: Tokenizer, stop: tuple[str, ...] = (), *, skip_special_tokens: bool = True):
        self._tokenizer = tokenizer
        self._stream = tokenizer.decode_stream(skip_special_tokens=skip_special_tokens)
        self._stop = stop
        self._hold = max((len(s) for s in stop), default=1) - 1
        self.text = ""
        self._emitted = 0

    def add(self, token_id: int) -> str | None:
        """Append one token; return the stop string it completed (text is then cut before it), else None."""
        chunk = self._stream.step(self._tokenizer.hf, token_id)
        if not chunk:
            return None
        start = max(0, len(self.text) - self._hold)
        self.text += chunk
        best: tuple[int, str] | None = None
        for s in self._stop:
            pos = self.text.find(s, start)
            if pos != -1 and (best is None or pos < best[0]):
                best = (pos, s)
        if best is None:
            return None
        self.text = self.text[: best[0]]
        return best[1]

    def take_new_text(self, *, finished: bool) -> str:
        """Text not yet released; all of it once ``finished``, else all but the held-back tail."""
        upto = len(self.text) if finished else max(self._emitted, len(self.text) - self._hold)
        new = self.text[self._emitted : upto]
        self._emitted = upto
        return new

    def mark_emitted(self) -> None:
        """Treat all text so far as already streamed (a request that continues elsewhere-started output)."""
        self._emitted = len(self.text)
