"""Bytes → CompletionRequest, with every failure turned into a 400 that names the field."""

from __future__ import annotations

import re

import msgspec

from proxy.api.errors import ProxyError, bad_request
from proxy.api.filters import parse_filter
from proxy.api.request import CompletionRequest, ThinkingEnabled

_decoder = msgspec.json.Decoder(CompletionRequest, strict=False)

_AT = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_MISSING = re.compile(r"Object missing required field `(?P<field>[^`]+)`")


def _json_path_to_param(path: str) -> str:
    # msgspec says `$.a.b[1].c`; our `param` is `a.b[1].c`.
    return path[1:] if path.startswith(".") else path


def _validation_error(err: msgspec.ValidationError) -> ProxyError:
    match = _AT.match(str(err))
    assert match is not None  # the pattern matches any string
    what, path = match["what"], _json_path_to_param(match["path"] or "")
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
        request = _decoder.decode(body)
    except msgspec.ValidationError as err:
        raise _validation_error(err) from None
    except msgspec.DecodeError as err:
        raise bad_request(f"Request body is not valid JSON: {err}", None) from None
    _check(request)
    return request


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
