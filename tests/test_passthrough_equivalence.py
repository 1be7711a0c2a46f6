"""The declared pass-through (OpenAI completion stream → completions surface, rewritten at the
byte level) must say exactly what the canonical path says for the same upstream stream:
decoded into deltas, then rendered by the completions surface (docs/architecture.md)."""

from __future__ import annotations

import json

import msgspec
import pytest

from proxy.api.completions import DeltaRenderer
from proxy.api.response import Completion
from proxy.core.target import Target
from proxy.providers.openai.stream import DeltaDecoder, StreamTranslator, collect_frames

TARGET = Target("emu", "m")
_chunk = msgspec.json.Decoder(Completion).decode


def upstream_stream(texts: list[str], *, choices: int = 1, reason: str = "length", usage: bool = True) -> bytes:
    """An OpenAI `/v1/completions` stream as the API writes it: in-progress chunks with
    `finish_reason: null` and `logprobs: null`, a finishing chunk, a usage chunk, [DONE]."""
    events = []
    for i, text in enumerate(texts):
        for index in range(choices):
            last = i == len(texts) - 1
            events.append({"id": "cmpl-1", "object": "text_completion", "created": 1700000000,
                           "choices": [{"text": text, "index": index, "logprobs": None,
                                        "finish_reason": reason if last else None}],
                           "model": "m", "system_fingerprint": None, "usage": None})
    if usage:
        events.append({"id": "cmpl-1", "object": "text_completion", "created": 1700000000, "choices": [],
                       "model": "m", "usage": {"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12}})
    body = b"".join(b"data: " + json.dumps(e, separators=(",", ":")).encode() + b"\n\n" for e in events)
    return body + b"data: [DONE]\n\n"


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)] if size else [data]


def passthrough(reads: list[bytes]) -> bytes:
    translate = StreamTranslator(TARGET)
    out = bytearray()
    for read in reads:
        translate.feed(read)
        out += translate.take()
    assert translate.finished
    return bytes(out)


def canonical(reads: list[bytes]) -> bytes:
    decoder = DeltaDecoder(TARGET)
    renderer: DeltaRenderer | None = None
    out = bytearray()
    for read in reads:
        decoder.feed(read)
        deltas = decoder.take()
        if deltas:
            assert decoder.head is not None
            renderer = renderer or DeltaRenderer(decoder.head)
            out += renderer.render(deltas)
    assert decoder.finished and renderer is not None
    return bytes(out + renderer.finish())


def chunks(frames: bytes) -> list[Completion]:
    events = [e for e in frames.split(b"\n\n") if e]
    assert all(e.startswith(b"data: ") for e in events)
    return [_chunk(e[6:]) for e in events]


@pytest.mark.parametrize("size", [0, 1, 7, 64])
@pytest.mark.parametrize("shape", [
    {"texts": ["Hel", "lo", " wor", "ld"]},
    {"texts": ["a", "b"], "choices": 2, "reason": "stop"},
    {"texts": ["only"], "usage": False},
    {"texts": ["é", "漢字", "🙂"]},
])
def test_passthrough_equals_the_canonical_path(size, shape):
    data = upstream_stream(**shape)
    reads = pieces(data, size)
    fast, slow = chunks(passthrough(reads)), chunks(canonical(reads))
    assert fast == slow
    # And both say what the client needs: every chunk has a spec finish_reason, the last the real one.
    assert fast[-1].choices[0].finish_reason == shape.get("reason", "length")
    if shape.get("usage", True):
        assert fast[-1].usage is not None and fast[-1].usage.total_tokens == 12


def test_the_cache_folds_passthrough_frames_into_the_whole_answer():
    frames = passthrough([upstream_stream(["Hel", "lo"], choices=2)])
    whole = collect_frames(None, [frames])  # type: ignore[arg-type]
    assert whole is not None
    assert [c.text for c in whole.choices] == ["Hello", "Hello"]
    assert [c.finish_reason for c in whole.choices] == ["length", "length"]
    assert whole.usage is not None and whole.usage.completion_tokens == 9
