"""Request parsing without HTTP: defaults, prompt forms, context arithmetic (ScriptedBackend: 128-token context)."""

from __future__ import annotations

import pytest

from tests.thunder.server.scripted import ScriptedBackend
from thunder.server.errors import ApiError
from thunder.server.requests import ParsedRequest, decode_body, parse_chat, parse_completion
from thunder.server.schemas import ChatCompletionRequest, CompletionRequest

BACKEND = ScriptedBackend()
CTX = {"served_model_name": "scripted-echo", "request_id": "r1", "arrival_time": 0.0}


def completion(body: bytes) -> ParsedRequest:
    return parse_completion(decode_body(body, CompletionRequest), BACKEND, **CTX)


@pytest.mark.parametrize(
    ("prompt", "ids"),
    [(b'"ab"', [97, 98]), (b"[5, 6]", [5, 6]), (b'["ab"]', [97, 98]), (b"[[7, 8, 9]]", [7, 8, 9])],
)
def test_prompt_forms(prompt: bytes, ids: list[int]) -> None:
    parsed = completion(b'{"prompt": ' + prompt + b"}")
    assert parsed.generate.prompt_token_ids == ids
    assert parsed.generate.request_id == "r1"


def test_completion_defaults_follow_openai() -> None:
    parsed = completion(b'{"prompt": "ab"}')
    p = parsed.generate.params
    assert (p.max_tokens, p.temperature, p.top_p, p.top_k, p.seed, p.ignore_eos) == (
        16,
        1.0,
        1.0,
        0,
        None,
        False,
    )
    assert (parsed.stream, parsed.include_usage) == (False, False)


def test_default_max_tokens_shrinks_to_the_room_left_but_an_explicit_one_does_not() -> None:
    assert completion(b'{"prompt": "' + b"a" * 120 + b'"}').generate.params.max_tokens == 8
    with pytest.raises(ApiError) as info:
        completion(b'{"prompt": "' + b"a" * 120 + b'", "max_tokens": 9}')
    assert (info.value.status, info.value.code) == (400, "context_length_exceeded")


def test_a_prompt_filling_the_whole_context_is_refused_even_without_max_tokens() -> None:
    with pytest.raises(ApiError) as info:
        completion(b'{"prompt": "' + b"a" * 128 + b'"}')
    assert info.value.code == "context_length_exceeded"


def test_stop_string_becomes_a_list_and_nulls_mean_defaults() -> None:
    body = b'{"prompt": "ab", "stop": "\\n", "temperature": null, "top_k": null, "stream": true, "stream_options": null}'
    parsed = completion(body)
    assert list(parsed.generate.params.stop) == ["\n"]
    assert parsed.generate.params.temperature == 1.0 and parsed.stream


def test_chat_include_usage_and_model_check() -> None:
    body = b'{"model": "scripted-echo", "messages": [{"role": "user", "content": "q"}], "stream": true,'
    body += b' "stream_options": {"include_usage": true}}'
    parsed = parse_chat(decode_body(body, ChatCompletionRequest), BACKEND, **CTX)
    assert parsed.include_usage
    with pytest.raises(ApiError) as info:
        parse_chat(
            decode_body(body.replace(b"scripted-echo", b"other"), ChatCompletionRequest), BACKEND, **CTX
        )
    assert (info.value.status, info.value.param, info.value.code) == (404, "model", "model_not_found")
