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
    unsupported_parameter = "unsupported_parameter"
    server_overloaded = "server_overloaded"


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


class FailureKind(StrEnum):
    """Why an attempt failed; retry, fallback, metrics and breakers decide on this, not on text."""

    status = "status"  # the provider answered with an error status
    timeout = "timeout"  # no answer within the attempt's time (counts as 408)
    connection = "connection"  # unreachable, reset, or the stream was cut
    protocol = "protocol"  # the provider answered something that is not its documented shape


class UpstreamError(ProxyError):
    """A failed attempt at one provider. `status` drives retry and fallback; 408 stands for a
    timeout (README, "Routing semantics")."""

    def __init__(self, base: ProxyError, *, provider: str, kind: FailureKind = FailureKind.status,
                 retry_after: float | None = None) -> None:
        super().__init__(base.status, base.message, type=base.type, param=base.param, code=base.code,
                         headers=base.headers)
        self.provider = provider
        self.kind = kind
        self.retry_after = retry_after


def connection_error(label: str, detail: str) -> UpstreamError:
    return UpstreamError(
        ProxyError(502, f"{label}: cannot reach provider ({detail})", type=ErrorType.upstream,
                   code=ErrorCode.provider_error),
        provider=label.partition("/")[0], kind=FailureKind.connection,
    )


def protocol_error(label: str, detail: str) -> UpstreamError:
    return UpstreamError(
        ProxyError(502, f"{label}: invalid response from provider ({detail})", type=ErrorType.upstream,
                   code=ErrorCode.provider_error),
        provider=label.partition("/")[0], kind=FailureKind.protocol,
    )


def timeout_error(label: str, seconds: float) -> UpstreamError:
    return UpstreamError(
        ProxyError(408, f"{label}: no response within {seconds * 1000:.0f} ms", type=ErrorType.timeout,
                   code=ErrorCode.provider_timeout),
        provider=label.partition("/")[0], kind=FailureKind.timeout,
    )


def status_error(label: str, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 retry_after: float | None = None) -> UpstreamError:
    """A provider's error status, its message kept; `code` is the provider's own machine-readable
    error type where it has one (README, "Errors"), else orq's name for the status.

    A provider's 401/403 means *our* credentials for it are wrong, not the client's: it is a 502
    `provider_error`, so SDKs do not report "invalid API key" to a client whose key is fine."""
    provider = label.partition("/")[0]
    if status in (401, 403):
        base = ProxyError(502, f"{label}: the provider refused the proxy's credentials (HTTP {status}): {message}",
                          type=ErrorType.upstream, code=ErrorCode.provider_error)
        return UpstreamError(base, provider=provider)
    base = upstream_error(status, message, param)
    if code:
        base.code = code
    return UpstreamError(base, provider=provider, retry_after=retry_after)
