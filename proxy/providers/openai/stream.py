"""OpenAI's completion stream: passed through to the completions surface as SSE frames ready
to write, or decoded into canonical deltas for any other surface.

The pass-through (`PASSTHROUGH`) is declared: the completions surface speaks this very format, so

most events — chunks of a choice still generating — need only two byte-level edits to match the
spec (`finish_reason: null` → `"stop"`, drop `usage: null`); those are rewritten
without parsing. Everything else — the chunk that finishes a choice, the usage chunk, an error
event, anything unusual — is decoded and re-encoded. Frames from one upstream read are written
to the client in one piece, as they arrived.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import msgspec

from proxy.api.response import Choice, Completion, encoder
from proxy.core.errors import protocol_error
from proxy.core.model import Delta, Result, StreamHead, Usage, assemble
from proxy.core.sse import SSEParser, frame
from proxy.core.target import Target
from proxy.providers.openai import wire
from proxy.providers.openai.translate import deltas_of, error_in_body, finish_reason

PASSTHROUGH = "openai.completions"  # the wire format the pass-through frames are in

# Searches use `find`, not `in`, for the reason proxy/core/sse.py gives: this runs on every read.
_NULL_REASON = b'"finish_reason":null'
_IN_PROGRESS = b'"finish_reason":"stop"'  # the spec's enum has no "not yet" (DESIGN.md)
_NOT_IN_SPEC = (b',"usage":null', b',"system_fingerprint":null')
_EMPTY_TEXT = b'"text":""'  # a chunk with nothing to show yet (a role-only first chunk, say)
_decoder = msgspec.json.Decoder(wire.UpstreamCompletion)


def _rewrite(payload: bytes) -> bytes:
    payload = payload.replace(_NULL_REASON, _IN_PROGRESS)
    for field in _NOT_IN_SPEC:
        payload = payload.replace(field, b"")
    return payload


_REQUIRED = (b'"model":', b'"created":', b'"object":')  # the spec's chunk shape needs them


def _well_formed(data: bytes, events: int) -> bool:
    """Bytes relayed unparsed must be valid UTF-8 and carry the chunk fields the spec requires,
    once per event; anything else goes through the parser, which repairs or refuses it."""
    for field in _REQUIRED:
        if data.count(field) != events:
            return False
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def _fast(event: bytes) -> bytes | None:
    """An in-progress chunk rewritten in place, or None when the event must be parsed."""
    if event.find(_NULL_REASON) == -1 or event.count(b'"finish_reason"') != 1 or event.find(b'"error"') != -1:
        return None
    if not _well_formed(event, 1):
        return None
    return frame(_rewrite(event))


def chunk_head(region: bytes) -> bytes | None:
    """`data: ` and the first chunk's fields up to its `choices`, when they hold every field the
    spec requires: servers repeat that head on every chunk of a stream (`id`, `object`,
    `created`, `model`, …), so one comparison with it checks those fields in each chunk."""
    end = region.find(_CHOICES, 0, _MAX_HEAD)
    if end == -1 or not region.startswith(b"data: {"):
        return None
    head = region[:end]
    model, created, kind = _REQUIRED
    found = head.find(model) != -1 and head.find(created) != -1 and head.find(kind) != -1
    return head if found else None


def rewrite_in_progress(region: bytes, head: bytes | None = None) -> bytes | None:
    """A region (`data: {...}` events joined by blank lines) rewritten whole when every event
    in it is a one-line chunk of a choice still generating; None when one is anything else.

    Each pass over the bytes costs about as much as handling an event in Python, so the checks
    are few and whole-region: raw newlines cannot occur inside JSON, so the newlines are exactly
    the separators; the `finish_reason: null` replaced must be one per event (an error event, a
    usage chunk or a finished choice has none); and the spec's required fields must be in every
    event: when every event starts with the stream's `head` (chunk_head, found once per stream
    by the caller, b"" when it found none, or here when None), one count checks framing and
    fields together; otherwise each field is counted.
    """
    newlines = region.count(b"\n")
    if head is None:
        head = chunk_head(region)
    if head and region.startswith(head):
        separators = region.count(b"\n\n" + head) if newlines else 0
        if newlines != 2 * separators:
            return None
        try:
            region.decode()
        except UnicodeDecodeError:
            return None
        # A fingerprint with a value in the head is in no event null: no need to look for one.
        fingerprint = head.find(b'"system_fingerprint":') != -1 and head.find(_NOT_IN_SPEC[1]) == -1
        fields = _NOT_IN_SPEC[:1] if fingerprint else _NOT_IN_SPEC
    else:
        separators = region.count(b"\n\ndata: {")
        if (not region.startswith(b"data: {") or newlines != 2 * separators
                or not _well_formed(region, separators + 1)):
            return None
        fields = _NOT_IN_SPEC
    # split + join rather than replace: one search pass instead of replace's two (it counts
    # first), and the pieces say how many there were.
    pieces = region.split(_NULL_REASON)
    if len(pieces) != separators + 2:
        return None
    rewritten = _IN_PROGRESS.join(pieces)
    for field in fields:
        pieces = rewritten.split(field)
        if len(pieces) > 1:
            rewritten = b"".join(pieces)
    return rewritten


_NO_HEAD = b""  # the stream has none: count each field
_CHOICES = b'"choices":['
_MAX_HEAD = 1024  # a head longer than this is checked field by field


def _chunk_of(upstream: wire.UpstreamCompletion, target: Target) -> Completion:
    """A parsed chunk in the spec's shape, the fields a sloppy server left out filled in."""
    return Completion(
        id=upstream.id,
        choices=[Choice(c.text, c.index, finish_reason(c.finish_reason), c.logprobs) for c in upstream.choices],
        created=upstream.created or int(time.time()),
        model=upstream.model or target.model,
        object="text_completion",
        system_fingerprint=upstream.system_fingerprint,
        usage=upstream.usage,
    )


class StreamTranslator:
    """The pass-through: feed upstream bytes; take SSE frames out, in the completions surface's
    shape. Raises UpstreamError on an error event."""

    def __init__(self, target: Target, limit: int = 1 << 20) -> None:
        self.target = target
        self.usage: Usage | None = None
        self.parser = SSEParser(limit)
        self.output = bytearray()
        self.content_seen = False
        self.finished = False
        # OpenAI sends the usage in a last chunk with no choices; it is folded into the chunk that
        # finished, so the final chunk carries both the real finish_reason and the usage.
        self.held: Completion | None = None
        self.head: bytes | None = None  # the stream's chunk_head once sought (b"" when it has none)

    def take(self) -> bytes:
        out = bytes(self.output)
        self.output.clear()
        return out

    def feed(self, data: bytes) -> None:
        region = self.parser.feed_region(data)
        if region is None:
            self._events(self.parser.drain())
        elif region:
            # The usual read: chunks still generating, rewritten whole, framing kept. A read that
            # also ends the stream (a whole answer written at once) has its generating prefix
            # rewritten whole and only the last events — finish, usage, [DONE] — parsed.
            last = region.rfind(_NULL_REASON) if not self.finished and self.held is None else -1
            if last == -1:
                self._events(self.parser.events(region))
                return
            cut = region.find(b"\n\n", last)
            generating = region if cut == -1 else region[:cut]
            if self.head is None:
                self.head = chunk_head(generating) or _NO_HEAD
            bulk = rewrite_in_progress(generating, self.head)
            if bulk is None:
                self._events(self.parser.events(region))
                return
            self._bulk(generating, bulk)
            if cut != -1:
                self._events(self.parser.events(region[cut + 2:]))

    def _bulk(self, region: bytes, rewritten: bytes) -> None:
        self.output += rewritten
        self.output += b"\n\n"
        if not self.content_seen:
            # Usually the first event has text: look there before searching the whole region.
            first = region.find(b"\n\n")
            if (region.find(_EMPTY_TEXT, 0, len(region) if first == -1 else first) == -1
                    or region.count(_EMPTY_TEXT) <= region.count(b"\n\n")):
                self.content_seen = True

    def _events(self, events: Iterator[bytes]) -> None:
        for event in events:
            if self.finished:
                continue
            if event == b"[DONE]":
                self._flush_held()
                self.finished = True
                continue
            fast = _fast(event)
            if fast is not None:
                self._flush_held()
                self.output += fast
                if not self.content_seen and event.find(_EMPTY_TEXT) == -1:
                    self.content_seen = True
                continue
            self._parsed(event)

    def _parsed(self, event: bytes) -> None:
        try:
            upstream = _decoder.decode(event)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise protocol_error(self.target.label, "undecodable stream event") from None
        if upstream.error is not None:
            raise error_in_body(self.target, upstream.error)
        if self.held is not None:
            if not upstream.choices and upstream.usage is not None:  # the usage chunk: folded in
                self.held.usage = upstream.usage
                return
            self._flush_held()
        chunk = _chunk_of(upstream, self.target)
        if any(c.finish_reason for c in upstream.choices):
            self.held = chunk
            self.content_seen = True
        elif chunk.choices or chunk.usage is not None:
            self._emit(chunk)
            if any(c.text for c in chunk.choices):
                self.content_seen = True

    def _emit(self, chunk: Completion) -> None:
        if chunk.usage is not None:
            self.usage = chunk.usage
        self.output += frame(encoder.encode(chunk))

    def _flush_held(self) -> None:
        if self.held is not None:
            self._emit(self.held)
            self.held = None


def collect_frames(head: StreamHead, batches: list[bytes]) -> Result | None:
    """Pass-through frames (our own rewrite, `data: {chunk}` events) folded into the whole
    answer, for the cache. None when there is nothing to keep."""
    deltas: list[Delta] = []
    first: wire.UpstreamCompletion | None = None
    for event in b"".join(batches).split(b"\n\n"):
        payload = event.removeprefix(b"data: ")
        if not payload or payload == b"[DONE]":
            continue
        chunk = _decoder.decode(payload)
        first = first or chunk
        deltas += deltas_of(chunk)
    if first is None:
        return None
    return assemble(StreamHead(first.id, first.created, first.model, first.system_fingerprint), deltas)


class Chunk(Protocol):
    """What both OpenAI stream formats (completion and chat chunks) share."""

    id: str
    created: int
    model: str
    system_fingerprint: str | None
    error: wire.UpstreamErrorBody | str | None


class DeltaDecoder:
    """The canonical path: feed upstream bytes; take canonical deltas out. Raises UpstreamError
    on an error event. `head` is known from the first chunk. `decode` and `deltas` say which of
    OpenAI's two stream formats it reads (completion chunks by default, chat chunks for chat)."""

    def __init__(self, target: Target, limit: int = 1 << 20, decode: Callable[[bytes], Any] = _decoder.decode,
                 deltas: Callable[[Any], list[Delta]] = deltas_of) -> None:
        self.target = target
        self.parser = SSEParser(limit)
        self.decode = decode
        self.deltas = deltas
        self.output: list[Delta] = []
        self.head: StreamHead | None = None
        self.content_seen = False
        self.finished = False

    def take(self) -> list[Delta]:
        out = self.output
        self.output = []
        return out

    def feed(self, data: bytes) -> None:
        for event in self.parser.feed(data):
            if self.finished:
                continue
            if event == b"[DONE]":
                self.finished = True
                continue
            try:
                chunk: Chunk = self.decode(event)
            except (msgspec.DecodeError, msgspec.ValidationError):
                raise protocol_error(self.target.label, "undecodable stream event") from None
            if chunk.error is not None:
                raise error_in_body(self.target, chunk.error)
            if self.head is None:
                self.head = StreamHead(chunk.id, chunk.created, chunk.model or self.target.model,
                                       chunk.system_fingerprint)
            deltas = self.deltas(chunk)
            if not self.content_seen and any(d.text or d.reasoning or d.tool_calls or d.finish_reason
                                             for d in deltas):
                self.content_seen = True
            self.output += deltas
