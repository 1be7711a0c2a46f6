"""The one error shape every response uses, and the exception that carries it.

Both the orq SDK and the openai SDK parse `{"error": {message, type, param, code}}`, so every
failure — ours or an upstream's — leaves the proxy in exactly that shape.
"""

from __future__ import annotations

import re
from enum import StrEnum

import msgspec


class ErrorType(StrEnum):
    invalid_request = "invalid_request_error"
    authentication = "authentication_error"
    permission = "permission_error"
    not_found = "not_found_error"
    rate_limit = "rate_limit_error"
    upstream = "api_error"
    timeout = "timeout_error"
    internal = "internal_error"


class ErrorCode(StrEnum):
    """orq's code names where one fits (DESIGN.md, "Errors")."""

    invalid_request_body = "invalid_request_body"
    invalid_api_key = "invalid_api_key"
    insufficient_scope = "insufficient_scope"
    rate_limit_exceeded = "rate_limit_exceeded"
    provider_error = "provider_error"
    provider_timeout = "provider_timeout"
    provider_overloaded = "provider_overloaded"
    request_timeout = "request_timeout"
    internal_error = "internal_error"
    payload_too_large = "payload_too_large"
    model_not_found = "model_not_found"
    not_found = "not_found"


class ErrorBody(msgspec.Struct, omit_defaults=False):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorEnvelope(msgspec.Struct):
    error: ErrorBody


_encoder = msgspec.json.Encoder()


class ProxyError(Exception):
    """An error that becomes an HTTP response (or an in-band SSE error event)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: ErrorType = ErrorType.invalid_request,
        param: str | None = None,
        code: ErrorCode | str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code.value if isinstance(code, ErrorCode) else code
        self.headers = headers or {}

    def envelope(self) -> ErrorEnvelope:
        return ErrorEnvelope(ErrorBody(self.message, self.type.value, self.param, self.code))

    def body(self) -> bytes:
        return _encoder.encode(self.envelope())

    def __repr__(self) -> str:
        return f"ProxyError({self.status}, {self.message!r}, param={self.param!r}, code={self.code!r})"


def bad_request(message: str, param: str | None = None) -> ProxyError:
    return ProxyError(400, message, param=param, code=ErrorCode.invalid_request_body)


# Upstream statuses → the type and code a client sees (the status itself is kept).
_UPSTREAM_KIND: dict[int, tuple[ErrorType, ErrorCode]] = {
    400: (ErrorType.invalid_request, ErrorCode.provider_error),
    401: (ErrorType.authentication, ErrorCode.provider_error),
    403: (ErrorType.permission, ErrorCode.provider_error),
    404: (ErrorType.not_found, ErrorCode.provider_error),
    408: (ErrorType.timeout, ErrorCode.provider_timeout),
    422: (ErrorType.invalid_request, ErrorCode.provider_error),
    429: (ErrorType.rate_limit, ErrorCode.rate_limit_exceeded),
    503: (ErrorType.upstream, ErrorCode.provider_overloaded),
    529: (ErrorType.upstream, ErrorCode.provider_overloaded),
}


def upstream_error(status: int, message: str, param: str | None = None) -> ProxyError:
    """An upstream failure as our error shape, keeping the upstream's status."""
    kind = _UPSTREAM_KIND.get(status)
    if kind is None:
        kind = (ErrorType.upstream, ErrorCode.provider_error) if status >= 500 else (
            ErrorType.invalid_request,
            ErrorCode.provider_error,
        )
    return ProxyError(status, message, type=kind[0], param=param, code=kind[1])


_LOCATION = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)


def validation_location(err: msgspec.ValidationError) -> tuple[str, str]:
    """msgspec says `Expected int <= 5 - at $.retry.count`; this gives ("retry.count", "Expected
    int <= 5"), the path as our `param` and config errors name it ("" at the top level)."""
    match = _LOCATION.match(str(err))
    assert match is not None  # the pattern matches any string
    return (match["path"] or "").removeprefix("."), match["what"]
