"""The aiohttp application: OpenAI routes, SSE streaming, health, metrics, plan and OpenAPI document."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from thunder.metrics import ServingMetrics
from thunder.server.backend import Backend
from thunder.server.errors import ApiError, internal_error
from thunder.server.generation import Generation, open_generation
from thunder.server.openapi import openapi_document
from thunder.server.requests import ParsedRequest, decode_body, parse_chat, parse_completion
from thunder.server.responses import ChatFormat, CompletionFormat, ResponseFormat, usage_of
from thunder.server.schemas import ChatCompletionRequest, CompletionRequest, ModelCard, ModelList

log = logging.getLogger(__name__)

BACKEND = web.AppKey("backend", Backend)
METRICS = web.AppKey("metrics", ServingMetrics)
SERVED_MODEL = web.AppKey("served_model_name", str)
_STARTED = web.AppKey("started", int)
_encode = msgspec.json.Encoder().encode
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(
    backend: Backend, *, served_model_name: str | None = None, metrics: ServingMetrics | None = None
) -> web.Application:
    """Build the OpenAI-compatible app around `backend` (the model is served as `served_model_name`).

    Run it with `thunder.server.start`/`serve`: they enable aiohttp's handler cancellation, which is what
    turns a client disconnect into `backend.abort(request_id)` while no token is being written.
    """
    name = served_model_name or backend.model_name
    metrics = metrics or ServingMetrics(model_name=name)
    app = web.Application(middlewares=[_openai_errors])
    app[BACKEND] = backend
    app[METRICS] = metrics
    app[SERVED_MODEL] = name
    app[_STARTED] = int(time.time())
    app.router.add_get("/v1/models", _models)
    app.router.add_post("/v1/completions", _completions)
    app.router.add_post("/v1/chat/completions", _chat_completions)
    app.router.add_get("/health", _health)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/v1/plan", _plan)
    app.router.add_get("/openapi.json", _openapi)
    return app


@web.middleware
async def _openai_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as OpenAI JSON: ApiError as is, aiohttp's 404/405 translated, crashes as 500."""
    try:
        return await handler(request)
    except ApiError as exc:
        error = exc
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error = ApiError(
            exc.status, f"{exc.reason}: {request.method} {request.path}", type="invalid_request_error"
        )
    except (
        Exception
    ) as exc:  # NOTE: a bug in one request must not take the server down; log it and answer 500.
        log.exception("unhandled error serving %s %s", request.method, request.path)
        error = internal_error(exc)
    request.app[METRICS].record_http_error(error.status)
    return error.to_response()


# ------------------------------------------------------------------ generation


async def _completions(request: web.Request) -> web.StreamResponse:
    body = decode_body(await request.read(), CompletionRequest)
    parsed = parse_completion(body, request.app[BACKEND], **_context(request, "cmpl"))
    fmt = CompletionFormat(parsed.generate.request_id, request.app[SERVED_MODEL])
    return await _generate(request, parsed, fmt)


async def _chat_completions(request: web.Request) -> web.StreamResponse:
    body = decode_body(await request.read(), ChatCompletionRequest)
    parsed = parse_chat(body, request.app[BACKEND], **_context(request, "chatcmpl"))
    fmt = ChatFormat(parsed.generate.request_id, request.app[SERVED_MODEL])
    return await _generate(request, parsed, fmt)


def _context(request: web.Request, prefix: str) -> dict[str, Any]:
    # NOTE: arrival is taken after the body is read; the socket wait before that is not the server's latency.
    return {
        "served_model_name": request.app[SERVED_MODEL],
        "request_id": f"{prefix}-{uuid.uuid4().hex}",
        "arrival_time": time.monotonic(),
    }


async def _generate(request: web.Request, parsed: ParsedRequest, fmt: ResponseFormat) -> web.StreamResponse:
    backend, metrics = request.app[BACKEND], request.app[METRICS]
    headers = {"X-Request-Id": parsed.generate.request_id}
    async with open_generation(backend, metrics, parsed.generate) as gen:
        if not parsed.stream:
            async for _ in gen:
                pass
            return web.Response(body=fmt.full(gen), content_type="application/json", headers=headers)
        response = web.StreamResponse(
            headers={**headers, "Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        try:
            await _stream(response, gen, fmt, include_usage=parsed.include_usage)
        except ConnectionResetError:
            # NOTE: the client went away; leaving the `async with` unfinished aborts the request upstream.
            log.info("client disconnected from %s", parsed.generate.request_id)
        return response


async def _stream(
    response: web.StreamResponse, gen: Generation, fmt: ResponseFormat, *, include_usage: bool
) -> None:
    """Write SSE `data:` events: the deltas, optionally a usage chunk, then `[DONE]`."""
    for opening in fmt.opening():
        await _send(response, opening)
    try:
        async for delta in gen:
            if (payload := fmt.chunk(delta)) is not None:
                await _send(response, payload)
    except ConnectionResetError:
        raise
    except Exception as exc:  # the backend failed mid-stream: headers are gone, so report in-band like vLLM
        log.exception("backend failed while streaming %s", gen.request.request_id)
        await _send(response, _encode(internal_error(exc).body()))
        await response.write(b"data: [DONE]\n\n")
        return
    if include_usage:
        await _send(response, fmt.usage_chunk(usage_of(gen)))
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()


async def _send(response: web.StreamResponse, payload: bytes) -> None:
    await response.write(b"data: " + payload + b"\n\n")


# ---------------------------------------------------------------- the others


async def _models(request: web.Request) -> web.Response:
    name = request.app[SERVED_MODEL]
    card = ModelCard(
        id=name,
        created=request.app[_STARTED],
        root=request.app[BACKEND].model_name,
        max_model_len=request.app[BACKEND].max_model_len,
    )
    return web.Response(body=_encode(ModelList(data=[card])), content_type="application/json")


async def _health(request: web.Request) -> web.Response:
    try:
        ready = await request.app[BACKEND].ready()
        reason = "no replica has completed its one-token probe yet"
    except Exception as exc:  # a failing probe means "not ready", never a 500
        ready, reason = False, f"readiness probe failed: {type(exc).__name__}: {exc}"
    if not ready:
        raise ApiError(
            503, f"Not ready: {reason}.", type="service_unavailable", code="not_ready", retry_after_s=1
        )
    return web.json_response({"status": "ready", "model": request.app[SERVED_MODEL]})


async def _metrics(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    metrics.update_from_state(request.app[BACKEND].state())
    body, content_type = metrics.render()
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


async def _plan(request: web.Request) -> web.Response:
    plan = request.app[BACKEND].plan_json()
    if plan is None:
        raise ApiError(404, "No plan: this backend runs without a planner.", code="plan_not_available")
    return web.json_response(plan)


async def _openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(request.app[SERVED_MODEL]))


__all__ = ["BACKEND", "METRICS", "SERVED_MODEL", "create_app"]
