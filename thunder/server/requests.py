"""Validate an OpenAI request body and turn it into a `GenerateRequest` (tokenized, context-checked)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import msgspec

from thunder.engine import SamplingParams
from thunder.server.backend import Backend, GenerateRequest
from thunder.server.errors import bad_request, from_decode_error, model_not_found
from thunder.server.schemas import ChatCompletionRequest, ChatMessage, CompletionRequest, SamplingFields

T = TypeVar("T", bound=msgspec.Struct)

# OpenAI's own default for /v1/completions; chat defaults to "the rest of the context".
COMPLETION_DEFAULT_MAX_TOKENS = 16


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedRequest:
    generate: GenerateRequest
    stream: bool
    include_usage: bool


def decode_body(body: bytes, kind: type[T]) -> T:
    """Decode and range-check a JSON body; a 400 names the offending field."""
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.DecodeError as exc:
        raise from_decode_error(exc) from None


def parse_completion(
    req: CompletionRequest, backend: Backend, *, served_model_name: str, request_id: str, arrival_time: float
) -> ParsedRequest:
    _check_common(req, served_model_name)
    _reject_if(req.echo, "echo", "echo=true is not supported")
    _reject_if(req.suffix, "suffix", "suffix is not supported")
    _reject_if(req.logprobs, "logprobs", f"logprobs={req.logprobs} is not supported; omit it")
    _reject_if(req.best_of not in (None, 1), "best_of", f"best_of={req.best_of}: only best_of=1 is supported")
    prompt_ids = _completion_prompt_ids(req.prompt, backend)
    return _build(req, backend, prompt_ids, "prompt", None, request_id, arrival_time, default_max=True)


def parse_chat(
    req: ChatCompletionRequest,
    backend: Backend,
    *,
    served_model_name: str,
    request_id: str,
    arrival_time: float,
) -> ParsedRequest:
    _check_common(req, served_model_name)
    _reject_if(req.logprobs, "logprobs", "logprobs=true is not supported; omit it")
    _reject_if(req.top_logprobs, "top_logprobs", "top_logprobs is not supported; omit it")
    _reject_if(req.tools, "tools", "tool calling is not supported; omit `tools`")
    messages = [_message_dict(i, m) for i, m in enumerate(req.messages)]
    try:
        rendered = backend.tokenizer.apply_chat_template(messages)
    except Exception as exc:  # NOTE: templates reject inputs in their own ways (raise_exception, no template)
        raise bad_request(
            f"messages cannot be rendered by the model's chat template: {exc}", "messages"
        ) from None
    prompt_ids = backend.tokenizer.encode(rendered) if isinstance(rendered, str) else list(rendered)
    max_tokens = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    return _build(
        req, backend, prompt_ids, "messages", max_tokens, request_id, arrival_time, default_max=False
    )


def _check_common(req: SamplingFields, served_model_name: str) -> None:
    if req.model is not None and req.model != served_model_name:
        raise model_not_found(req.model, served_model_name)
    _reject_if(
        req.n not in (None, 1), "n", f"n={req.n}: only n=1 is supported; send {req.n} requests instead"
    )
    for field in ("frequency_penalty", "presence_penalty"):
        value = getattr(req, field)
        _reject_if(value not in (None, 0.0), field, f"{field}={value} is not supported; use 0 or omit it")
    _reject_if(
        req.repetition_penalty not in (None, 1.0),
        "repetition_penalty",
        f"repetition_penalty={req.repetition_penalty} is not supported; use 1.0 or omit it",
    )


def _reject_if(condition: object, param: str, message: str) -> None:
    if condition:
        raise bad_request(message, param)


def _completion_prompt_ids(prompt: str | list[int | str | list[int]], backend: Backend) -> list[int]:
    if isinstance(prompt, str):
        return _encode_text(prompt, backend)
    if prompt and all(isinstance(t, int) for t in prompt):
        return _checked_token_ids(prompt, backend, "prompt")  # type: ignore[arg-type]
    if len(prompt) == 1:  # a batch of one: ["text"] or [[1, 2, 3]]
        (only,) = prompt
        if isinstance(only, str):
            return _encode_text(only, backend)
        if isinstance(only, list):
            return _checked_token_ids(only, backend, "prompt[0]")
    if not prompt:
        raise bad_request("prompt is empty; send a string or a list of token ids", "prompt")
    raise bad_request(
        f"prompt holds {len(prompt)} prompts (or mixes ints and strings); batched prompts are not supported: "
        "send one prompt (a string or a list of token ids) per request",
        "prompt",
    )


def _encode_text(text: str, backend: Backend) -> list[int]:
    ids = backend.tokenizer.encode(text)
    if not ids:
        raise bad_request("prompt is empty after tokenization; send at least one token", "prompt")
    return ids


def _checked_token_ids(ids: Sequence[int], backend: Backend, param: str) -> list[int]:
    # NOTE: `vocab_size` is optional on tokenizers; an out-of-range id must never reach the engine's embedding.
    vocab = getattr(backend.tokenizer, "vocab_size", None)
    upper = vocab if isinstance(vocab, int) else None
    for i, token in enumerate(ids):
        if token < 0 or (upper is not None and token >= upper):
            bound = f"[0, {upper})" if upper is not None else "≥ 0"
            raise bad_request(f"{param}[{i}]={token} is not a token id; ids must be in {bound}", param)
    return list(ids)


def _message_dict(index: int, message: ChatMessage) -> dict[str, str]:
    content = message.content
    if content is None:
        content = ""
    elif not isinstance(content, str):
        texts = []
        for j, part in enumerate(content):
            if part.type != "text" or part.text is None:
                raise bad_request(
                    f"messages[{index}].content[{j}] has type `{part.type}`; only text parts are supported",
                    f"messages[{index}].content[{j}].type",
                )
            texts.append(part.text)
        content = "\n".join(texts)
    return {"role": message.role, "content": content}


def _build(
    req: SamplingFields,
    backend: Backend,
    prompt_ids: list[int],
    prompt_param: str,
    max_tokens: int | None,
    request_id: str,
    arrival_time: float,
    *,
    default_max: bool,
) -> ParsedRequest:
    if max_tokens is None:
        max_tokens = req.max_tokens
    limit = backend.max_model_len
    room = limit - len(prompt_ids)
    if max_tokens is None:
        # NOTE: an omitted max_tokens never causes a context error: it shrinks to what is left.
        max_tokens = min(COMPLETION_DEFAULT_MAX_TOKENS, room) if default_max else room
    if room < 1 or len(prompt_ids) + max_tokens > limit:
        raise bad_request(
            f"This model's maximum context length is {limit} tokens, however you requested "
            f"{len(prompt_ids) + max(max_tokens, 1)} tokens ({len(prompt_ids)} in the {prompt_param}, "
            f"{max(max_tokens, 1)} for the completion). Please reduce the {prompt_param} or max_tokens.",
            prompt_param,
            code="context_length_exceeded",
        )
    stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    _reject_if(any(s == "" for s in stop), "stop", "stop strings must be non-empty")
    try:
        params = SamplingParams(
            max_tokens=max_tokens,
            temperature=1.0 if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
            top_k=0 if req.top_k in (None, -1) else req.top_k,  # the engine's "disabled" is 0; vLLM's was -1
            seed=req.seed,
            stop=stop,
            stop_token_ids=list(req.stop_token_ids or []),
            ignore_eos=bool(req.ignore_eos),
        )
    except ValueError as exc:  # the engine's own checks (ConfigError): its message starts with `field=value`
        field = str(exc).split("=", 1)[0]
        raise bad_request(
            f"Invalid sampling parameters: {exc}", field if field.isidentifier() else None
        ) from None
    options = req.stream_options
    if options is not None and not req.stream:
        raise bad_request("stream_options is only allowed with stream=true", "stream_options")
    return ParsedRequest(
        generate=GenerateRequest(
            request_id=request_id, prompt_token_ids=prompt_ids, params=params, arrival_time=arrival_time
        ),
        stream=bool(req.stream),
        include_usage=bool(options and options.include_usage),
    )


__all__ = ["ParsedRequest", "decode_body", "parse_chat", "parse_completion"]
