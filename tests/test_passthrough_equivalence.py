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
from proxy.providers.openai.stream import (
    DeltaDecoder,
    StreamTranslator,
    collect_frames,
    rewrite_in_progress,
)

TARGET = Target("emu", "m")
_chunk = msgspec.json.Decoder(Completion).decode


def upstream_stream(texts: list[str], *, choices: int = 1, reason: str = "length", usage: bool = True,
                    head_first: bool = False, fingerprint: str | None = None,
                    no_model_at: int | None = None) -> bytes:
    """An OpenAI `/v1/completions` stream as the API writes it: in-progress chunks with
    `finish_reason: null` and `logprobs: null`, a finishing chunk, a usage chunk, [DONE].
    `head_first`: `model` and `system_fingerprint` before `choices`, as vLLM and llama.cpp order
    them; `no_model_at`: that chunk leaves `model` out (a sloppy server)."""
    events = []
    for i, text in enumerate(texts):
        for index in range(choices):
            last = i == len(texts) - 1
            event = {"id": "cmpl-1", "object": "text_completion", "created": 1700000000}
            tail = {"model": "m", "system_fingerprint": fingerprint}
            if head_first:
                event.update(tail)
            event["choices"] = [{"text": text, "index": index, "logprobs": None,
                                 "finish_reason": reason if last else None}]
            if not head_first:
                event.update(tail)
            event["usage"] = None
            if no_model_at == len(events):
                del event["model"]
            events.append(event)
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
    {"texts": ["Hel", "lo", " wor", "ld"], "head_first": True},
    {"texts": ["Hel", "lo", " wor", "ld"], "head_first": True, "fingerprint": "fp_1"},
    {"texts": ["a", "b", "c"], "choices": 2, "head_first": True, "fingerprint": "fp_1"},
    {"texts": ["Hel", "lo", " wor", "ld"], "head_first": True, "no_model_at": 1},
    {"texts": ["Hel", "lo", " wor", "ld"], "no_model_at": 2},
])
def test_passthrough_equals_the_canonical_path(size, shape):
    data = upstream_stream(**shape)
    reads = pieces(data, size)
    fast, slow = chunks(passthrough(reads)), chunks(canonical(reads))
    assert fast == slow
    assert all(chunk.model == "m" and chunk.created for chunk in fast)  # the spec's required fields
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


@pytest.mark.parametrize("head_first", [False, True])
def test_generating_chunks_take_the_whole_region_rewrite(head_first):
    """The bulk rewrite (no per-event parsing) serves a run of generating chunks in either field
    order, and refuses a run in which one chunk lacks a required field."""
    data = upstream_stream(["a", "b", "c", "d"], head_first=head_first)
    region = b"\n\n".join(data.split(b"\n\n")[:3])  # the three chunks still generating
    rewritten = rewrite_in_progress(region)
    assert rewritten is not None
    assert rewritten.count(b'"finish_reason":"stop"') == 3 and b"null," not in rewritten.replace(b'"logprobs":null', b"")
    sloppy = upstream_stream(["a", "b", "c", "d"], head_first=head_first, no_model_at=1)
    assert rewrite_in_progress(b"\n\n".join(sloppy.split(b"\n\n")[:3])) is None


@pytest.mark.parametrize(("texts", "seen"), [
    (["a", "b", "c"], True),
    (["", "", "c"], True),  # a role-only first chunk, then text: content after all
    (["", "", ""], False),  # nothing to show yet: a failure now may still fall back
])
def test_the_bulk_rewrite_says_whether_content_was_seen(texts, seen):
    """Before the first content a broken stream can still go to the next candidate; after it,
    it cannot. A read of generating chunks only (the bulk rewrite) must tell the two apart."""
    data = upstream_stream([*texts, "end"])
    region = b"\n\n".join(data.split(b"\n\n")[:len(texts)]) + b"\n\n"
    translate = StreamTranslator(TARGET)
    translate.feed(region)
    assert translate.content_seen is seen
    assert translate.take().count(b'"finish_reason":"stop"') == len(texts)
