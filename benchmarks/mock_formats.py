"""Wire formats the benchmark mock upstream answers, keyed by request path.

A format turns a request body into a prebuilt answer: the JSON body, or the list of SSE
events of a stream. Answers are cached by everything they depend on, so the mock spends its
time on sockets rather than on JSON. Ids are therefore not unique per request, which no proxy
under test relies on.

Two formats: OpenAI's legacy completions (``/v1/completions``, the pass-through path) and
Anthropic's Messages (``/v1/messages``, behind Switchyard's translating ``anthropic``
connector). Another wire format is a ``Format`` added to ``FORMATS`` under its path; the
harness side is a ``ProviderPath`` in ``scenarios.py``.

Stream shape: a model name containing ``stream-<N>x<MS>`` streams N content events MS ms
apart (the events before the first content go with it, those after the last with the last);
one containing ``-each`` writes one event per write without a delay; anything else uses the
mock's command-line defaults.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

_PROFILE = re.compile(r"stream-(\d+)x(\d+)")
_CACHE_MAX = 256  # distinct answers kept; benchmarks use a handful of models


class BadRequest(Exception):
    """The body is not what the format expects; answered 400 in the format's error shape."""


@dataclass(frozen=True)
class Answer:
    json: bytes | None  # a whole answer, or None for a stream
    events: tuple[bytes, ...] = ()  # SSE events, each a complete ``data: ...\n\n``
    each: bool = False  # one write per event
    delay_s: float = 0.0  # between events (implies ``each``)


@dataclass(frozen=True)
class Defaults:
    events: int  # content events per stream
    each: bool
    delay_s: float


@dataclass(frozen=True)
class Format:
    name: str
    answer: Callable[[bytes, Defaults], Answer]
    error_body: bytes  # 503 body, for the failing prefix ``/fail``
    bad_body: bytes  # 400 body


# ---------------------------------------------------------------- OpenAI legacy completions


class _StreamOptions(msgspec.Struct):
    include_usage: bool = False


class _CompletionRequest(msgspec.Struct):
    model: str = "mock"
    stream: bool = False
    stream_options: _StreamOptions | None = None


_DECODE = msgspec.json.Decoder(_CompletionRequest).decode
_USAGE = {"prompt_tokens": 5, "completion_tokens": 16, "total_tokens": 21}
_DONE = b"data: [DONE]\n\n"


def _openai_error(message: str, kind: str) -> bytes:
    return msgspec.json.encode({"error": {"message": message, "type": kind, "param": None, "code": None}})


_cache: dict[tuple, Answer] = {}  # keys start with the format's name


def _remember(key: tuple, answer: Answer) -> Answer:
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()
    _cache[key] = answer
    return answer


def _shape(model: str, defaults: Defaults) -> tuple[int, bool, float]:
    if m := _PROFILE.search(model):
        delay = int(m.group(2)) / 1000
        return int(m.group(1)), True, delay
    return defaults.events, defaults.each or "-each" in model, defaults.delay_s


def openai_completions(raw: bytes, defaults: Defaults) -> Answer:
    try:
        req = _DECODE(raw)
    except msgspec.DecodeError as exc:
        raise BadRequest(str(exc)) from None
    usage = req.stream_options is not None and req.stream_options.include_usage
    key = ("openai", req.model, req.stream, usage, defaults)
    if (hit := _cache.get(key)) is not None:
        return hit
    head = {
        "id": "cmpl-mock",
        "object": "text_completion",
        "created": int(time.time()),
        "model": req.model,
        "system_fingerprint": "fp_mock",
    }
    if not req.stream:
        out = {
            **head,
            "choices": [{"text": " hello" * 16, "index": 0, "logprobs": None, "finish_reason": "length"}],
            "usage": _USAGE,
        }
        answer = Answer(msgspec.json.encode(out))
    else:
        n, each, delay = _shape(req.model, defaults)
        events = []
        for i in range(n):
            chunk: dict = {
                **head,
                "choices": [
                    {"text": " tok", "index": 0, "logprobs": None, "finish_reason": "length" if i == n - 1 else None}
                ],
            }
            if usage:
                chunk["usage"] = None
            events.append(b"data: " + msgspec.json.encode(chunk) + b"\n\n")
        if usage:
            events.append(b"data: " + msgspec.json.encode({**head, "choices": [], "usage": _USAGE}) + b"\n\n")
        events.append(_DONE)
        if delay > 0:  # the delay is between content events; usage and [DONE] follow the last at once
            events[n - 1 :] = [b"".join(events[n - 1 :])]
        answer = Answer(None, tuple(events), each or delay > 0, delay)
    return _remember(key, answer)


OPENAI = Format(
    "openai-completions",
    openai_completions,
    error_body=_openai_error("The server is overloaded or not ready yet.", "server_error"),
    bad_body=_openai_error("We could not parse the JSON body of your request.", "invalid_request_error"),
)


# ---------------------------------------------------------------- Anthropic Messages
# Shapes from Anthropic's API reference (as in tests/emulators/anthropic_server.py): the Message
# object, the stream's named events, the error envelope. The answer mirrors the OpenAI one (16
# output tokens, cut by max_tokens) so both paths relay the same text and usage.


class _MessagesRequest(msgspec.Struct):
    model: str
    max_tokens: int
    messages: msgspec.Raw  # required, but never looked into: validating it is not the mock's job
    stream: bool = False


_DECODE_MESSAGES = msgspec.json.Decoder(_MessagesRequest).decode
_INPUT_TOKENS, _OUTPUT_TOKENS = 5, 16


def _anthropic_error(message: str, kind: str) -> bytes:
    return msgspec.json.encode({"type": "error", "error": {"type": kind, "message": message}})


def _event(payload: dict) -> bytes:
    return b"event: " + payload["type"].encode() + b"\ndata: " + msgspec.json.encode(payload) + b"\n\n"


def anthropic_messages(raw: bytes, defaults: Defaults) -> Answer:
    try:
        req = _DECODE_MESSAGES(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BadRequest(str(exc)) from None
    key = ("anthropic", req.model, req.stream, defaults)
    if (hit := _cache.get(key)) is not None:
        return hit
    usage = {
        "input_tokens": _INPUT_TOKENS,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": _OUTPUT_TOKENS,
    }
    message = {"id": "msg_mock", "type": "message", "role": "assistant", "model": req.model}
    if not req.stream:
        out = {
            **message,
            "content": [{"type": "text", "text": " hello" * _OUTPUT_TOKENS}],
            "stop_reason": "max_tokens",
            "stop_sequence": None,
            "usage": usage,
        }
        return _remember(key, Answer(msgspec.json.encode(out)))
    n, each, delay = _shape(req.model, defaults)
    start: dict = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
    start["usage"] = {**usage, "output_tokens": 1}  # as the API: a first count, the final one in message_delta
    before = [
        _event({"type": "message_start", "message": start}),
        _event({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        _event({"type": "ping"}),  # the API sends one after the first block starts
    ]
    content = [
        _event({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " tok"}})
    ] * n
    after = [
        _event({"type": "content_block_stop", "index": 0}),
        _event({
            "type": "message_delta",
            "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
            "usage": {"output_tokens": _OUTPUT_TOKENS},
        }),
        _event({"type": "message_stop"}),
    ]
    if delay > 0:  # N content events N-1 delays apart: the framing goes with the first and the last
        content[0] = b"".join(before) + content[0]
        content[-1] = content[-1] + b"".join(after)
        events = content
    else:
        events = before + content + after
    return _remember(key, Answer(None, tuple(events), each or delay > 0, delay))


ANTHROPIC = Format(
    "anthropic-messages",
    anthropic_messages,
    error_body=_anthropic_error("Overloaded", "overloaded_error"),
    bad_body=_anthropic_error("There was an error parsing the body of your request.", "invalid_request_error"),
)

# path -> format; ``/fail`` + path answers the format's 503 at once.
FORMATS: dict[bytes, Format] = {b"/v1/completions": OPENAI, b"/v1/messages": ANTHROPIC}
