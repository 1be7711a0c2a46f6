"""Bytes → CompletionRequest, with every failure turned into a 400 that names the field."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from proxy.api.errors import ProxyError, bad_request, validation_location
from proxy.api.filters import parse_filter
from proxy.api.request import CompletionRequest, ThinkingEnabled

# Strict: a string is never coerced to a number or a boolean ("5" → 5, "true" → True), nor an
# int to a boolean, as msgspec's lax mode would. The one leniency (DESIGN.md) — integral floats
# where integers are meant, as the orq SDK sends `retry.count: 3.0` — is handled by `_integral`.
_decoder = msgspec.json.Decoder(CompletionRequest)
_any_decoder = msgspec.json.Decoder()
# Free-form values, passed on as the client wrote them: floats in them stay floats.
_FREE_FORM = frozenset({"inputs", "metadata", "filter_by"})
_MAX_EXACT = 2**53  # beyond this a float is not an exact integer anyway

_MISSING = re.compile(r"Object missing required field `(?P<field>[^`]+)`")


def _validation_error(err: msgspec.ValidationError) -> ProxyError:
    path, what = validation_location(err)
    missing = _MISSING.match(what)
    if missing:
        param = f"{path}.{missing['field']}" if path else missing["field"]
        return bad_request(f"Missing required field `{param}`", param)
    if not path:
        return bad_request(f"Request body must be a JSON object: {what}", None)
    return bad_request(f"Invalid value for `{path}`: {what}", path)


def decode_request(body: bytes) -> CompletionRequest:
    if not body.strip():
        raise bad_request("Request body is empty; expected a JSON object", None)
    try:
        request = _decoder.decode(body)  # the fast path: every well-typed request
    except msgspec.ValidationError as err:
        request = _decode_lenient(body, err)
    except msgspec.DecodeError as err:
        raise _not_json(err) from None
    except RecursionError:  # `[[[[…]]]]` deeper than the interpreter's recursion limit
        raise bad_request("Request body is nested too deeply", None) from None
    _check(request)
    return request


def _not_json(err: msgspec.DecodeError) -> ProxyError:
    return bad_request(f"Request body is not valid JSON: {err}", None)


def _decode_lenient(body: bytes, typed_error: msgspec.ValidationError) -> CompletionRequest:
    """The wrong shape, or integral floats where integers are meant: decode again with those
    floats made ints; whatever still fails is the client's error."""
    try:
        raw = _any_decoder.decode(body)
    except msgspec.ValidationError:  # a number out of range: the typed error says where
        raise _validation_error(typed_error) from None
    except msgspec.DecodeError as err:  # the typed decoder stopped before a syntax error
        raise _not_json(err) from None
    except RecursionError:
        raise bad_request("Request body is nested too deeply", None) from None
    try:
        return msgspec.convert(_integral(raw), CompletionRequest)
    except msgspec.ValidationError as err:
        raise _validation_error(err) from None
    except RecursionError:
        raise bad_request("Request body is nested too deeply", None) from None


def _integral(root: Any) -> Any:
    """Integral floats → ints, in place, everywhere but in free-form values (float fields accept
    ints). A loop, not recursion: nesting is bounded by the decoder, not by this walk."""
    stack = [root] if isinstance(root, dict | list) else []
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            if isinstance(value, float):
                if value.is_integer() and abs(value) <= _MAX_EXACT:
                    node[key] = int(value)
            elif isinstance(value, dict | list) and key not in _FREE_FORM:
                stack.append(value)
    return root


def _check(request: CompletionRequest) -> None:
    """What the schema alone cannot say."""
    if not request.model and not (request.load_balancer or (request.orq and request.orq.load_balancer)):
        raise bad_request("Missing required field `model`", "model")
    if request.prompt is None and not (request.orq and request.orq.prompt):
        raise bad_request("Missing required field `prompt`", "prompt")
    if isinstance(request.prompt, list) and not request.prompt:
        raise bad_request("`prompt` must be a string or a non-empty array of strings", "prompt")
    thinking = request.thinking
    if (
        isinstance(thinking, ThinkingEnabled)
        and request.max_tokens is not None
        and thinking.budget_tokens >= request.max_tokens
    ):
        raise bad_request("`thinking.budget_tokens` must be less than `max_tokens`", "thinking.budget_tokens")
    if request.orq and request.orq.knowledge_bases:
        for i, kb in enumerate(request.orq.knowledge_bases):
            if kb.filter_by is not None:
                parse_filter(kb.filter_by, f"orq.knowledge_bases[{i}].filter_by")
