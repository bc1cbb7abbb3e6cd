"""OpenAI response bodies and SSE chunks for `/v1/completions` and `/v1/chat/completions`.

Both endpoints share the stream loop in `thunder.server.handlers`; they differ only in the shapes built
here. A builder returns encoded JSON (`bytes`), ready for a response body or an SSE `data:` line.
"""

from __future__ import annotations

import time

import msgspec

from thunder.server.backend import TokenDelta
from thunder.server.generation import Generation
from thunder.server.schemas import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatDelta,
    Completion,
    CompletionChoice,
    Usage,
)

_encode = msgspec.json.Encoder().encode


def usage_of(gen: Generation) -> Usage:
    return Usage(
        prompt_tokens=gen.num_prompt_tokens,
        completion_tokens=gen.num_output_tokens,
        total_tokens=gen.num_prompt_tokens + gen.num_output_tokens,
    )


class CompletionFormat:
    """Shapes of `/v1/completions` (object `text_completion`, streamed and not)."""

    def __init__(self, request_id: str, model: str) -> None:
        self.id = request_id
        self.model = model
        self.created = int(time.time())

    def opening(self) -> list[bytes]:
        return []

    def chunk(self, delta: TokenDelta) -> bytes | None:
        if not delta.text and not delta.finished:
            return None
        choice = CompletionChoice(
            text=delta.text, finish_reason=delta.finish_reason if delta.finished else None
        )
        return _encode(Completion(id=self.id, created=self.created, model=self.model, choices=[choice]))

    def usage_chunk(self, usage: Usage) -> bytes:
        return _encode(
            Completion(id=self.id, created=self.created, model=self.model, choices=[], usage=usage)
        )

    def full(self, gen: Generation) -> bytes:
        choice = CompletionChoice(text=gen.text, finish_reason=gen.finish_reason)
        body = Completion(
            id=self.id, created=self.created, model=self.model, choices=[choice], usage=usage_of(gen)
        )
        return _encode(body)


class ChatFormat:
    """Shapes of `/v1/chat/completions` (`chat.completion` and `chat.completion.chunk`)."""

    def __init__(self, request_id: str, model: str) -> None:
        self.id = request_id
        self.model = model
        self.created = int(time.time())

    def _chunk(self, delta: ChatDelta, finish_reason: str | None = None) -> bytes:
        choice = ChatChunkChoice(delta=delta, finish_reason=finish_reason)
        return _encode(
            ChatCompletionChunk(id=self.id, created=self.created, model=self.model, choices=[choice])
        )

    def opening(self) -> list[bytes]:
        return [self._chunk(ChatDelta(role="assistant", content=""))]

    def chunk(self, delta: TokenDelta) -> bytes | None:
        if delta.finished:
            return self._chunk(ChatDelta(content=delta.text or None), delta.finish_reason)
        return self._chunk(ChatDelta(content=delta.text)) if delta.text else None

    def usage_chunk(self, usage: Usage) -> bytes:
        body = ChatCompletionChunk(
            id=self.id, created=self.created, model=self.model, choices=[], usage=usage
        )
        return _encode(body)

    def full(self, gen: Generation) -> bytes:
        choice = ChatChoice(message=AssistantMessage(content=gen.text), finish_reason=gen.finish_reason)
        body = ChatCompletion(
            id=self.id, created=self.created, model=self.model, choices=[choice], usage=usage_of(gen)
        )
        return _encode(body)


ResponseFormat = CompletionFormat | ChatFormat

__all__ = ["ChatFormat", "CompletionFormat", "ResponseFormat", "usage_of"]
