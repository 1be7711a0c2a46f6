"""Bytes → a surface's request struct, with every failure turned into a 400 that names the field."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Generic, NamedTuple, TypeVar

import msgspec

from proxy.api.chat_request import ChatCompletionRequest
from proxy.api.filters import parse_filter
from proxy.api.request import (
    CompletionRequest,
    RoutedRequest,
    SamplingRequest,
    ThinkingEnabled,
)
from proxy.core.errors import ProxyError, bad_request, validation_location

# Strict: a string is never coerced to a number or a boolean ("5" → 5, "true" → True), nor an
# int to a boolean, as msgspec's lax mode would. The one leniency (DESIGN.md) — integral floats
# where integers are meant, as the orq SDK sends `retry.count: 3.0` — is handled by `_integral`.
_any_decoder = msgspec.json.Decoder()
# Free-form values, passed on as the client wrote them: floats in them stay floats.
_FREE_FORM = frozenset({"inputs", "metadata", "filter_by", "parameters", "schema"})
_MAX_EXACT = 2**53  # beyond this a float is not an exact integer anyway
_MAX_EXTRAS = 64  # fields outside our schema one request may carry

_MISSING = re.compile(r"Object missing required field `(?P<field>[^`]+)`")

Request = TypeVar("Request", bound=RoutedRequest)


def _validation_error(err: msgspec.ValidationError) -> ProxyError:
    path, what = validation_location(err)
    if "matching regex" in what and "x1f" in what:  # ModelName's pattern: say it in words
        what = "must not contain control characters (newlines, NUL, …)"
    missing = _MISSING.match(what)
    if missing:
        param = f"{path}.{missing['field']}" if path else missing["field"]
        return bad_request(f"Missing required field `{param}`", param)
    if not path:
        return bad_request(f"Request body must be a JSON object: {what}", None)
    return bad_request(f"Invalid value for `{path}`: {what}", path)


# A UTF-16 surrogate escape that is not half of a pair: msgspec calls it "Input data was truncated".
_LONE_SURROGATE = re.compile(
    rb"(?<!\\)(?:\\\\)*\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    rb"|(?<![0-9a-fA-F]{4})(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)


def _not_json(err: msgspec.DecodeError, body: bytes = b"") -> ProxyError:
    if str(err) == "Input data was truncated":
        lone = _LONE_SURROGATE.search(body)
        if lone is not None:
            escape = lone[0][-6:].decode()
            return bad_request(f"Request body is not valid JSON: `{escape}` at byte {lone.end() - 6} is half of "
                               "a UTF-16 surrogate pair without its other half", None)
    return bad_request(f"Request body is not valid JSON: {err}", None)


class Decoded(NamedTuple, Generic[Request]):
    request: Request
    extras: dict[str, Any] | None  # top-level fields outside our schema, as the client sent them


class BodyDecoder(Generic[Request]):
    """Decodes one surface's request: the fast typed path for every well-typed body without
    extras, the lenient path for the rest; then the checks the schema alone cannot say."""

    def __init__(self, kind: type[Request], check: Callable[[Request], None]) -> None:
        self.kind = kind
        self.check = check
        self.decoder = msgspec.json.Decoder(kind)
        self.fields = frozenset(kind.__struct_fields__)

    def __call__(self, body: bytes) -> Decoded[Request]:
        if not body.strip():
            raise bad_request("Request body is empty; expected a JSON object", None)
        extras = None
        try:
            request = self.decoder.decode(body)
        except msgspec.ValidationError as err:
            request, extras = self._lenient(body, err)
        except msgspec.DecodeError as err:
            raise _not_json(err, body) from None
        except RecursionError:  # `[[[[…]]]]` deeper than the interpreter's recursion limit
            raise bad_request("Request body is nested too deeply", None) from None
        self.check(request)
        return Decoded(request, extras)

    def _lenient(self, body: bytes, typed_error: msgspec.ValidationError) -> tuple[Request, dict[str, Any] | None]:
        """Fields outside our schema, the wrong shape, or integral floats where integers are
        meant: set the extras aside and decode again with those floats made ints; whatever still
        fails is the client's error."""
        try:
            raw = _any_decoder.decode(body)
        except msgspec.ValidationError:  # a number out of range: the typed error says where
            raise _validation_error(typed_error) from None
        except msgspec.DecodeError as err:  # the typed decoder stopped before a syntax error
            raise _not_json(err, body) from None
        except RecursionError:
            raise bad_request("Request body is nested too deeply", None) from None
        extras = None
        if isinstance(raw, dict):
            unknown = [name for name in raw if name not in self.fields]
            if len(unknown) > _MAX_EXTRAS:
                raise bad_request(f"Too many fields outside the schema ({len(unknown)}; at most {_MAX_EXTRAS})",
                                  None)
            extras = {name: raw.pop(name) for name in unknown} or None
        try:
            return msgspec.convert(_integral(raw), self.kind), extras
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


def _check_routed(request: RoutedRequest) -> None:
    """What the schema alone cannot say, for every surface."""
    if not request.model and not (request.load_balancer or (request.orq and request.orq.load_balancer)):
        raise bad_request("Missing required field `model`", "model")
    if request.plugins:
        raise bad_request("`plugins` are not supported by this gateway yet; send an empty list or omit it",
                          "plugins")
    if request.orq and request.orq.knowledge_bases:
        for i, kb in enumerate(request.orq.knowledge_bases):
            if kb.filter_by is not None:
                parse_filter(kb.filter_by, f"orq.knowledge_bases[{i}].filter_by")


def _check_budget(request: SamplingRequest, max_tokens: int | None, param: str) -> None:
    thinking = request.thinking
    if isinstance(thinking, ThinkingEnabled) and max_tokens is not None and thinking.budget_tokens >= max_tokens:
        raise bad_request(f"`thinking.budget_tokens` must be less than `{param}`", "thinking.budget_tokens")


def _check_completion(request: CompletionRequest) -> None:
    _check_routed(request)
    if request.prompt is None and not (request.orq and request.orq.prompt):
        raise bad_request("Missing required field `prompt`", "prompt")
    if isinstance(request.prompt, list) and not request.prompt:
        raise bad_request("`prompt` must be a string or a non-empty array of strings", "prompt")
    _check_budget(request, request.max_tokens, "max_tokens")


def _check_chat(request: ChatCompletionRequest) -> None:
    _check_routed(request)
    if request.messages is None:
        raise bad_request("Missing required field `messages`", "messages")
    if request.max_tokens is not None and request.max_completion_tokens is not None:
        raise bad_request("Send `max_tokens` or `max_completion_tokens`, not both", "max_completion_tokens")
    if request.max_completion_tokens is not None:
        _check_budget(request, request.max_completion_tokens, "max_completion_tokens")
    else:
        _check_budget(request, request.max_tokens, "max_tokens")


decode_request = BodyDecoder(CompletionRequest, _check_completion)
decode_chat = BodyDecoder(ChatCompletionRequest, _check_chat)
