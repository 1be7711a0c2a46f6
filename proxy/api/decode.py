"""Bytes → CompletionRequest, with every failure turned into a 400 that names the field."""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import msgspec

from proxy.api.filters import parse_filter
from proxy.api.request import CompletionRequest, ThinkingEnabled
from proxy.core.errors import ProxyError, bad_request, validation_location

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


_FIELDS = frozenset(CompletionRequest.__struct_fields__)
_MAX_EXTRAS = 64  # fields outside our schema one request may carry


class Decoded(NamedTuple):
    request: CompletionRequest
    extras: dict[str, Any] | None  # top-level fields outside our schema, as the client sent them


def decode_request(body: bytes) -> Decoded:
    if not body.strip():
        raise bad_request("Request body is empty; expected a JSON object", None)
    extras = None
    try:
        request = _decoder.decode(body)  # the fast path: every well-typed request without extras
    except msgspec.ValidationError as err:
        request, extras = _decode_lenient(body, err)
    except msgspec.DecodeError as err:
        raise _not_json(err) from None
    except RecursionError:  # `[[[[…]]]]` deeper than the interpreter's recursion limit
        raise bad_request("Request body is nested too deeply", None) from None
    _check(request)
    return Decoded(request, extras)


def _not_json(err: msgspec.DecodeError) -> ProxyError:
    return bad_request(f"Request body is not valid JSON: {err}", None)


def _decode_lenient(body: bytes, typed_error: msgspec.ValidationError
                    ) -> tuple[CompletionRequest, dict[str, Any] | None]:
    """Fields outside our schema, the wrong shape, or integral floats where integers are meant:
    set the extras aside and decode again with those floats made ints; whatever still fails is
    the client's error."""
    try:
        raw = _any_decoder.decode(body)
    except msgspec.ValidationError:  # a number out of range: the typed error says where
        raise _validation_error(typed_error) from None
    except msgspec.DecodeError as err:  # the typed decoder stopped before a syntax error
        raise _not_json(err) from None
    except RecursionError:
        raise bad_request("Request body is nested too deeply", None) from None
    extras = None
    if isinstance(raw, dict):
        unknown = [name for name in raw if name not in _FIELDS]
        if len(unknown) > _MAX_EXTRAS:
            raise bad_request(f"Too many fields outside the schema ({len(unknown)}; at most {_MAX_EXTRAS})", None)
        extras = {name: raw.pop(name) for name in unknown} or None
    try:
        return msgspec.convert(_integral(raw), CompletionRequest), extras
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
    if request.plugins:
        raise bad_request("`plugins` are not supported by this gateway yet; send an empty list or omit it",
                          "plugins")
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
