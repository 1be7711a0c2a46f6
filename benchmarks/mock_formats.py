"""Wire formats the benchmark mock upstream answers, keyed by request path.

A format turns a request body into a prebuilt answer: the JSON body, or the list of SSE
events of a stream. Answers are cached by everything they depend on, so the mock spends its
time on sockets rather than on JSON. Ids are therefore not unique per request, which no proxy
under test relies on.

To benchmark another upstream wire format (e.g. a translated provider such as Anthropic's
``/v1/messages``), write a ``Format`` and add it to ``FORMATS`` under its path; the harness
side is a ``ProviderPath`` in ``scenarios.py``.

Stream shape: a model name containing ``stream-<N>x<MS>`` streams N content events MS ms
apart (one write per event; usage and ``[DONE]`` go with the last); one containing ``-each``
writes one event per write without a delay; anything else uses the mock's command-line
defaults.
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


_cache: dict[tuple, Answer] = {}


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
    key = (req.model, req.stream, usage, defaults)
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
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()
    _cache[key] = answer
    return answer


OPENAI = Format(
    "openai-completions",
    openai_completions,
    error_body=_openai_error("The server is overloaded or not ready yet.", "server_error"),
    bad_body=_openai_error("We could not parse the JSON body of your request.", "invalid_request_error"),
)

# path -> format; ``/fail`` + path answers the format's 503 at once.
FORMATS: dict[bytes, Format] = {b"/v1/completions": OPENAI}
