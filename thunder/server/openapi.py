"""`/openapi.json`: an OpenAPI 3.1 document generated from the same msgspec Structs the server decodes."""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec

import thunder
from thunder.server.schemas import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    ErrorResponse,
    ModelList,
)

_REF = "#/components/schemas/{name}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(name=name)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "Invalid request; `error.param` names the field (`context_length_exceeded` when too long).",
        404: "Unknown model (`model_not_found`) or no plan.",
        500: "Internal error.",
        503: "Overloaded or not ready; see the `Retry-After` header.",
    }
    return {str(s): _json(_ref("ErrorResponse"), reasons[s]) for s in statuses}


def _generation(summary: str, request: str, body: str, chunk: str) -> dict[str, Any]:
    ok = _json(_ref(body), f"`{body}` (stream=false), or with stream=true an SSE stream of `{chunk}`.")
    ok["content"]["text/event-stream"] = {
        "schema": {
            "type": "string",
            "description": f"`data: <{chunk} JSON>` events, ended by `data: [DONE]`.",
        }
    }
    return {
        "post": {
            "summary": summary,
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(request)}}},
            "responses": {"200": ok, **_errors(400, 404, 500, 503)},
        }
    }


@cache
def _components() -> dict[str, Any]:
    types = [CompletionRequest, ChatCompletionRequest, Completion, ChatCompletion, ChatCompletionChunk]
    _, components = msgspec.json.schema_components([*types, ModelList, ErrorResponse], ref_template=_REF)
    return components


def openapi_document(served_model_name: str) -> dict[str, Any]:
    text = {"content": {"text/plain": {"schema": {"type": "string"}}}}
    paths = {
        "/v1/completions": _generation("Text completion", "CompletionRequest", "Completion", "Completion"),
        "/v1/chat/completions": _generation(
            "Chat completion", "ChatCompletionRequest", "ChatCompletion", "ChatCompletionChunk"
        ),
        "/v1/models": {
            "get": {"summary": "Served models", "responses": {"200": _json(_ref("ModelList"), "Models")}}
        },
        "/health": {
            "get": {
                "summary": "Ready only after a real one-token generation through every replica",
                "responses": {"200": {"description": "Ready"}, **_errors(503)},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (`thunder:` prefix, vLLM-like names)",
                "responses": {"200": {"description": "Prometheus text exposition", **text}},
            }
        },
        "/v1/plan": {
            "get": {
                "summary": "The deployed plan: replica groups, phases, parallel configs, routing ratios",
                "responses": {"200": _json({"type": "object"}, "Plan JSON"), **_errors(404)},
            }
        },
        "/openapi.json": {
            "get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1"}}}
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "thunder OpenAI-compatible API",
            "version": thunder.__version__,
            "description": f"Serving `{served_model_name}` with disaggregated prefill/decode.",
        },
        "paths": paths,
        "components": {"schemas": _components()},
    }


__all__ = ["openapi_document"]
