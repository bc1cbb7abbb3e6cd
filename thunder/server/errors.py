"""OpenAI-shaped HTTP errors: `{"error": {"message", "type", "param", "code"}}`."""

from __future__ import annotations

import math
import re

import msgspec
from aiohttp import web


class ApiError(Exception):
    """An error the client caused or must react to; rendered as OpenAI error JSON by the app's middleware.

    `param` names the offending request field (e.g. `"temperature"`, `"messages[2].content"`) so a client
    can point at it; `retry_after_s` adds a `Retry-After` header (overload).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.retry_after_s = retry_after_s

    def body(self) -> dict[str, dict[str, str | None]]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def to_response(self) -> web.Response:
        headers = {}
        if self.retry_after_s is not None:
            # NOTE: Retry-After is whole seconds (RFC 9110); round up so clients never retry too early.
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after_s)))
        return web.json_response(self.body(), status=self.status, headers=headers)


def bad_request(message: str, param: str | None, *, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def model_not_found(model: str, served: str) -> ApiError:
    return ApiError(
        404,
        f"The model `{model}` does not exist; this server serves `{served}` (see GET /v1/models).",
        param="model",
        code="model_not_found",
    )


def overloaded(retry_after_s: float, reason: str) -> ApiError:
    detail = f": {reason}" if reason else ""
    return ApiError(
        503,
        f"Server is overloaded{detail}; retry after {retry_after_s:.1f} s.",
        type="server_overloaded",
        code="overloaded",
        retry_after_s=retry_after_s,
    )


def internal_error(exc: BaseException) -> ApiError:
    return ApiError(500, f"Internal server error: {type(exc).__name__}: {exc}", type="server_error")


_PATH_RE = re.compile(r"at `\$\.?(?P<path>[^`]*)`")
_MISSING_RE = re.compile(r"missing required field `(?P<field>[^`]+)`")


def from_decode_error(exc: msgspec.DecodeError) -> ApiError:
    """Turn a msgspec decode/validation error into a 400 whose `param` is the offending field path."""
    text = str(exc)
    if not isinstance(exc, msgspec.ValidationError):
        return bad_request(f"Request body is not valid JSON: {text}", None)
    param: str | None = None
    if match := _PATH_RE.search(text):
        prefix = match.group("path")
        param = prefix or None
        text = text[: match.start()].rstrip(" -")
    if match := _MISSING_RE.search(text):
        field = match.group("field")
        param = f"{param}.{field}" if param else field
    where = f" (field `{param}`)" if param else ""
    return bad_request(f"Invalid request{where}: {text}", param)


__all__ = ["ApiError", "bad_request", "from_decode_error", "internal_error", "model_not_found", "overloaded"]
