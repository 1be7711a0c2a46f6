"""Unit tests of the incremental SSE parser: whatever way the bytes are cut, the same events."""

from __future__ import annotations

import pytest

from proxy.core.sse import SSEParser

# Several events with every line ending SSE allows, comments, multi-line data, fields the parser
# must skip, empty data, and multi-byte UTF-8 (2, 3 and 4 bytes).
STREAM = (
    b": a comment first\n"
    b"data: {\"text\": \"h\xc3\xa9llo\"}\n"
    b"\n"
    b"event: completion\r\n"
    b"id: 42\r\n"
    b"data: line one\r\n"
    b"data: line two \xe2\x9c\x93\r\n"
    b"\r\n"
    b"retry: 1000\r"
    b"data:no-space \xe6\x97\xa5\xe6\x9c\xac\r"
    b": comment inside an event\r"
    b"\r"
    b"data: \xf0\x9f\x98\x80 mixed endings\r\n"
    b"data:  two spaces\n"  # only the first space after the colon is dropped
    b"\r\n"
    b"data\n"  # a field name alone: data with an empty value
    b"\n"
    b": keep-alive\n\n"
    b"unknown: field\n"
    b"data: [DONE]\n"
    b"\n"
)
EXPECTED = [
    b'{"text": "h\xc3\xa9llo"}',
    b"line one\nline two \xe2\x9c\x93",
    b"no-space \xe6\x97\xa5\xe6\x9c\xac",
    b"\xf0\x9f\x98\x80 mixed endings\n two spaces",
    b"",
    b"[DONE]",
]


def parse(pieces: list[bytes]) -> list[bytes]:
    parser = SSEParser()
    out: list[bytes] = []
    for piece in pieces:
        out.extend(parser.feed(piece))
    out.extend(parser.close())
    return out


def test_whole():
    assert parse([STREAM]) == EXPECTED


def test_events_decode_as_utf8():
    assert [e.decode("utf-8") for e in parse([STREAM])][3].startswith("😀")


@pytest.mark.parametrize("at", range(len(STREAM) + 1))
def test_every_two_piece_split(at):
    assert parse([STREAM[:at], STREAM[at:]]) == EXPECTED


def test_one_byte_at_a_time():
    assert parse([STREAM[i:i + 1] for i in range(len(STREAM))]) == EXPECTED


def test_one_byte_at_a_time_with_empty_reads():
    pieces: list[bytes] = []
    for i in range(len(STREAM)):
        pieces += [STREAM[i:i + 1], b""]
    assert parse([b"", *pieces]) == EXPECTED


@pytest.mark.parametrize("size", [2, 3, 5, 7, 64])
def test_fixed_size_pieces(size):
    assert parse([STREAM[i:i + size] for i in range(0, len(STREAM), size)]) == EXPECTED


def test_events_come_out_as_soon_as_complete():
    parser = SSEParser()
    assert list(parser.feed(b"data: a\n")) == []
    assert list(parser.feed(b"\n")) == [b"a"]
    assert list(parser.feed(b"data: b\r")) == []
    assert list(parser.feed(b"\r")) == [b"b"]  # CR CR: the second CR is the blank line
    assert list(parser.feed(b"\ndata: c\r\n\r\n")) == [b"c"]


def test_cr_then_lf_in_next_read_is_one_line_end():
    parser = SSEParser()
    assert list(parser.feed(b"data: a\r")) == []
    assert list(parser.feed(b"\n")) == []  # the LF completes "\r\n", it is not a blank line
    assert list(parser.feed(b"data: b\r\n\r\n")) == [b"a\nb"]


def test_close_yields_event_without_blank_line():
    parser = SSEParser()
    assert list(parser.feed(b"data: one\n\ndata: last")) == [b"one"]
    assert list(parser.close()) == [b"last"]


def test_close_yields_event_with_line_end_but_no_blank_line():
    parser = SSEParser()
    assert list(parser.feed(b"data: x\r\ndata: y\r\n")) == []
    assert list(parser.close()) == [b"x\ny"]


def test_close_with_nothing_pending():
    parser = SSEParser()
    assert list(parser.feed(b"data: one\n\n: trailing comment\n")) == [b"one"]
    assert list(parser.close()) == []


def test_comments_and_unknown_fields_only():
    assert parse([b": one\n\n: two\r\n\r\nevent: x\nid: 1\n\n"]) == []


def test_large_event_split_many_ways():
    payload = ("é" * 5000).encode()
    stream = b"data: " + payload + b"\r\n\r\n"
    assert parse([stream[i:i + 4093] for i in range(0, len(stream), 4093)]) == [payload]
