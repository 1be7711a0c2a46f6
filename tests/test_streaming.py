"""Server-Sent Events end to end: format, schema, reassembly across awkward upstream reads,
mid-stream failures, client disconnects and backpressure."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.completion_sse import (
    CHOICE_REQUIRED,
    CHUNK_REQUIRED,
    FINISH_REASONS,
    chunks_and_error,
    parse_sse,
    texts,
    validate_chunk,
)
from tests.conftest import KEY_A, start_proxy
from tests.emulators.openai_server import Reply, _sse_events, openai_error

URL = "/v2/router/completions"
STREAM: dict[str, Any] = {"model": "emu/m", "prompt": "hi", "stream": True}
TEXT = "héllo wörld ✓ 日本"  # 1-, 2- and 3-byte UTF-8
SPEC = Path(__file__).parent / "data" / "router-completions.openapi.yaml"  # orq.ai's published contract

def test_validator_rejects_what_the_schema_rejects():
    good = {"id": "x", "choices": [{"text": "a", "index": 0, "finish_reason": "stop"}], "model": "m",
            "object": "text_completion", "created": 1, "usage": {"prompt_tokens": 1}}
    assert validate_chunk(good) == []
    assert validate_chunk({**good, "choices": [{"text": "a", "index": 0, "finish_reason": None}]})
    assert validate_chunk({**good, "choices": [{"text": "a", "index": 0}]})
    assert validate_chunk({**good, "choices": [{"text": 1, "index": 0, "finish_reason": "stop"}]})
    assert validate_chunk({k: v for k, v in good.items() if k != "object"})
    assert validate_chunk({**good, "usage": None})
    assert validate_chunk({**good, "created": None})
    assert validate_chunk([good])


def test_validator_matches_spec():
    import yaml

    spec = yaml.safe_load(SPEC.read_text())
    content = spec["paths"]["/v2/router/completions"]["post"]["responses"]["200"]["content"]
    schema = content["text/event-stream"]["schema"]
    assert set(schema["required"]) == CHUNK_REQUIRED
    choice = schema["properties"]["choices"]["items"]
    assert set(choice["required"]) == CHOICE_REQUIRED
    assert set(choice["properties"]["finish_reason"]["enum"]) == FINISH_REASONS


def stream(client: httpx.Client, **fields: Any) -> tuple[httpx.Response, list[dict], dict | None, bool]:
    with client.stream("POST", URL, json={**STREAM, **fields}) as r:
        raw = r.read()
    if r.status_code != 200 or not r.headers["content-type"].startswith("text/event-stream"):
        return r, [], None, False
    payloads, done = parse_sse(raw)
    chunks, error = chunks_and_error(payloads)
    return r, chunks, error, done


# -- the happy path -----------------------------------------------------------------------------------------
def test_headers(client, upstream):
    r, chunks, error, done = stream(client)
    assert r.status_code == 200
    assert r.headers["content-type"].split(";")[0] == "text/event-stream"
    assert r.headers["cache-control"] == "no-cache"
    assert r.headers["x-accel-buffering"] == "no"
    assert r.headers["x-request-id"]
    assert r.headers["x-switchyard-model"] == "emu/m"
    assert r.headers["x-switchyard-attempts"] == "1"
    assert float(r.headers["x-switchyard-overhead-ms"]) >= 0
    assert done and error is None
    assert texts(chunks) == {0: "Hello from the emulator"}


def test_stream_even_when_accept_prefers_json(client, upstream):
    # the orq SDK always sends this Accept header; `stream: true` decides
    with client.stream("POST", URL, json=STREAM, headers={"Accept": "application/json;q=1, text/event-stream;q=0"}) as r:
        raw = r.read()
    assert r.headers["content-type"].startswith("text/event-stream")
    assert parse_sse(raw)[1]


def test_final_chunk_has_real_finish_reason_and_usage(client, upstream):
    upstream.script("m", Reply(text=TEXT, chunks=5, finish_reason="length", prompt_tokens=11, completion_tokens=13))
    r, chunks, error, done = stream(client)
    assert r.status_code == 200
    assert done and error is None
    assert texts(chunks) == {0: TEXT}
    last = chunks[-1]
    assert last["choices"][0]["finish_reason"] == "length"
    assert last["usage"] == {"prompt_tokens": 11, "completion_tokens": 13, "total_tokens": 24}
    assert all("usage" not in c for c in chunks[:-1])
    assert all(c["id"] == chunks[0]["id"] and c["model"] == "m" and c["object"] == "text_completion" for c in chunks)


def _blob(reply: Reply, body: dict) -> bytes:
    """The emulator's byte stream for `reply` (ids differ per call, lengths do not)."""
    sent = {"model": "m", "stream": True, "stream_options": {"include_usage": True}, **body}
    events, _ = _sse_events(reply, sent, "m")
    return b"".join(events)


def _offsets_inside_data(blob: bytes) -> list[int]:
    out, at = [], blob.find(b"data:")
    while at != -1:
        out += [at + 1, at + 3, at + 5]  # inside `data`, between `data` and `:`, after `:`
        at = blob.find(b"data:", at + 1)
    return out


def _offsets_inside_utf8(blob: bytes) -> list[int]:
    return [i for i in range(len(blob)) if blob[i] & 0xC0 == 0x80]  # before a continuation byte


def _offsets_inside_crlf(blob: bytes) -> list[int]:
    out, at = [], blob.find(b"\r\n")
    while at != -1:
        out.append(at + 1)
        at = blob.find(b"\r\n", at + 1)
    return out


SPLITS = {
    "inside-data-prefix": ({}, _offsets_inside_data),
    "inside-utf8-char": ({}, _offsets_inside_utf8),
    "between-cr-and-lf": ({"crlf": True}, _offsets_inside_crlf),
    "crlf-and-utf8": ({"crlf": True}, lambda b: _offsets_inside_utf8(b) + _offsets_inside_crlf(b)),
    "comments": ({"comments": True}, lambda b: []),
    "comments-split": ({"comments": True, "crlf": True},
                       lambda b: _offsets_inside_crlf(b) + _offsets_inside_data(b) + _offsets_inside_utf8(b)),
    "every-16-bytes": ({}, lambda b: list(range(16, len(b), 16))),
}


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("case", list(SPLITS))
def test_reassembly(client, upstream, case, n):
    options, offsets = SPLITS[case]
    reply = Reply(text=TEXT, chunks=6, finish_reason="length", **options)
    split = sorted(set(offsets(_blob(reply, {"n": n, "prompt": "hi"}))))
    if case not in ("comments",):
        assert split, "the case must actually split the stream"
    upstream.script("m", Reply(text=TEXT, chunks=6, finish_reason="length", split_at=split or None,
                               chunk_delay_s=0.002 if split else 0.0, **options))
    r, chunks, error, done = stream(client, n=n)
    assert r.status_code == 200
    assert done and error is None
    assert texts(chunks) == {i: TEXT for i in range(n)}
    assert chunks[-1]["usage"]["completion_tokens"] == 7
    assert chunks[-1]["choices"][-1]["finish_reason"] == "length"


def test_list_prompt_stream(client, upstream):
    r, chunks, error, done = stream(client, prompt=["a", "b"], echo=True)
    assert r.status_code == 200
    assert done and error is None
    assert texts(chunks) == {0: "aHello from the emulator", 1: "bHello from the emulator"}


# -- failures -----------------------------------------------------------------------------------------------
def test_upstream_cut_mid_stream(client, upstream):
    upstream.script("m", Reply(text=TEXT, chunks=4, cut_after_chunks=2))
    r, chunks, error, done = stream(client)
    assert r.status_code == 200
    assert not done, "a failed stream must not end with [DONE]"
    assert error is not None, "exactly one in-band error event"
    assert error["type"] == "api_error" and error["code"] == "provider_error"
    assert "emu/m" in error["message"]
    assert len(chunks) == 2 and "".join(texts(chunks).values()) == TEXT[:len(TEXT) * 2 // 4]


def test_upstream_error_event_mid_stream(client, upstream):
    upstream.script("m", Reply(chunks=4, error_event_after_chunks=2,
                               error_body=openai_error(500, message="model crashed mid-way")))
    r, chunks, error, done = stream(client)
    assert r.status_code == 200
    assert not done
    assert error is not None and error["message"] == "model crashed mid-way"
    assert error["type"] == "api_error"
    assert len(chunks) == 2


def test_upstream_bare_string_error_event_mid_stream(client, upstream):
    head = b'data: {"id":"x","object":"text_completion","created":1,"model":"m","choices":[{"text":"par'
    upstream.script("m", Reply(raw_body=head + b'tial","index":0,"finish_reason":null}]}\n\n'
                                        b'data: {"error": "out of memory"}\n\n'))
    r, chunks, error, done = stream(client)
    assert r.status_code == 200
    assert texts(chunks) == {0: "partial"}
    assert not done and error is not None and error["message"] == "out of memory"


def test_upstream_without_usage_chunk(client, upstream):
    """A server that ignores `stream_options`: the last chunk still carries the real reason."""
    def chunk(text: str, reason: str | None) -> bytes:
        body = {"id": "x", "object": "text_completion", "created": 1, "model": "m",
                "choices": [{"text": text, "index": 0, "finish_reason": reason}]}
        return b"data: " + json.dumps(body).encode() + b"\n\n"

    upstream.script("m", Reply(raw_body=chunk("a", None) + chunk("b", "length") + b"data: [DONE]\n\n"))
    r, chunks, error, done = stream(client)
    assert r.status_code == 200
    assert done and error is None
    assert texts(chunks) == {0: "ab"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert "usage" not in chunks[-1]


def test_upstream_ends_without_done(client, upstream):
    upstream.script("m", Reply(raw_body=b'data: {"id":"x","object":"text_completion","created":1,"model":"m",'
                                         b'"choices":[{"text":"partial","index":0,"finish_reason":null}]}\n\n'))
    r, chunks, error, done = stream(client)
    assert r.status_code == 200
    assert texts(chunks) == {0: "partial"}
    assert not done and error is not None and error["code"] == "provider_error"


@pytest.mark.parametrize(
    ("reply", "status", "type_"),
    [
        (Reply(status=500), 500, "api_error"),
        (Reply(status=429), 429, "rate_limit_error"),
        (Reply(status=400), 400, "invalid_request_error"),
        (Reply(cut_after_chunks=0), 502, "api_error"),
        (Reply(error_event_after_chunks=0), 502, "api_error"),
        (Reply(status=200, raw_body=b"data: not json\n\n"), 502, "api_error"),
    ],
    ids=["status-500", "status-429", "status-400", "cut-before-first-chunk", "error-event-first", "garbage-event"],
)
def test_failure_before_first_chunk_is_plain_json(client, upstream, reply, status, type_):
    upstream.script("m", reply)
    with client.stream("POST", URL, json=STREAM) as r:
        raw = r.read()
    assert r.status_code == status, raw
    assert r.headers["content-type"].startswith("application/json")
    body = json.loads(raw)
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == type_
    assert r.headers["x-request-id"]


def test_fallback_before_first_chunk(client, upstream):
    upstream.script("m", Reply(status=503))
    upstream.script("b", Reply(cut_after_chunks=0))
    upstream.script("c", Reply(text=TEXT))
    r, chunks, error, done = stream(client, fallbacks=[{"model": "emu/b"}, {"model": "emu2/c"}])
    assert r.status_code == 200 and done and error is None
    assert texts(chunks) == {0: TEXT}
    assert r.headers["x-switchyard-model"] == "emu2/c"
    assert r.headers["x-switchyard-attempts"] == "3"


def test_no_fallback_after_first_chunk(client, upstream):
    upstream.script("m", Reply(cut_after_chunks=1))
    _, _, error, done = stream(client, fallbacks=[{"model": "emu/b"}])
    assert error is not None and not done
    assert [q.model for q in upstream.requests] == ["m"]


# -- disconnects and backpressure ---------------------------------------------------------------------------
def test_client_disconnect_cancels_upstream(proxy, upstream):
    upstream.script("m", Reply(chunks=50, chunk_delay_s=0.1))
    with (httpx.Client(base_url=proxy.url, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=10) as c,
          c.stream("POST", URL, json=STREAM) as r):
        assert r.status_code == 200
        seen = b""
        for piece in r.iter_raw():
            seen += piece
            if seen.count(b"\n\n") >= 2:
                break
        closed_at = time.monotonic()
        # leaving the block closes the half-read response, and with it the connection
    assert upstream.wait_for_disconnect(1.0), "the proxy must close its upstream request when the client goes"
    assert time.monotonic() - closed_at < 1.5
    assert upstream.disconnects == 1


def _raw_request(port: int, body: dict, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    payload = json.dumps(body).encode()
    sock.sendall(
        b"POST " + URL.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + f"Authorization: Bearer {KEY_A}\r\nContent-Type: application/json\r\n".encode()
        + f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload
    )
    return sock


def _read_all(sock: socket.socket, timeout: float = 30.0) -> bytes:
    sock.settimeout(timeout)
    parts = []
    while True:
        data = sock.recv(1 << 20)
        if not data:
            return b"".join(parts)
        parts.append(data)


def _dechunk(raw: bytes) -> tuple[bytes, bytes]:
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower(), head
    body = bytearray()
    view = memoryview(rest)
    at = 0
    while True:
        eol = rest.index(b"\r\n", at)
        size = int(rest[at:eol].split(b";")[0], 16)
        at = eol + 2
        if size == 0:
            return head, bytes(body)
        body += view[at:at + size]
        at += size + 2


def test_backpressure(emulator, upstream, tmp_path):
    piece = ("0123456789abcdef" * 256)[:4000]  # ~4 KB of text per chunk
    count = 3000
    proxy = start_proxy(emulator, tmp_path)
    try:
        # warm up: imports, pools, allocator arenas
        for _ in range(3):
            warm = _read_all(_raw_request(proxy.port, {**STREAM, "model": "emu/warm"}))
            assert warm.endswith(b"0\r\n\r\n")
        upstream.script("big", Reply(text=piece * count, chunks=count))
        time.sleep(0.2)
        before = proxy.rss_bytes()
        sock = _raw_request(proxy.port, {**STREAM, "model": "emu/big"}, rcvbuf=64 * 1024)
        peak = before
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:  # read nothing while the upstream pushes 12 MB
            peak = max(peak, proxy.rss_bytes())
            time.sleep(0.05)
        grown = peak - before
        assert grown < 8 * 1024 * 1024, f"proxy RSS grew by {grown / 1e6:.1f} MB while the client read nothing"
        head, body = _dechunk(_read_all(sock))
        sock.close()
        assert head.startswith(b"HTTP/1.1 200")
        payloads, done = parse_sse(body)
        chunks, error = chunks_and_error(payloads)
        assert done and error is None
        assert len(texts(chunks)[0]) == len(piece) * count
    finally:
        proxy.stop()


def test_max_request_seconds_mid_stream(emulator, upstream, tmp_path):
    """The server-wide deadline running out after the first chunk is a mid-stream failure like any
    other: one in-band error event, no [DONE], and a well-formed HTTP response."""
    extra = ("server: {host: 127.0.0.1, port: {port}, max_body_bytes: 65536, max_request_seconds: 0.5,"
             " shutdown_grace_seconds: 5}\n")
    proxy = start_proxy(emulator, tmp_path, extra=extra)
    try:
        upstream.script("slow", Reply(chunks=40, chunk_delay_s=0.05))
        with httpx.Client(base_url=proxy.url, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=10) as c:
            with c.stream("POST", URL, json={**STREAM, "model": "emu/slow"}) as r:
                assert r.status_code == 200
                raw = r.read()
            payloads, done = parse_sse(raw)
            chunks, error = chunks_and_error(payloads)
            assert chunks, "the first chunks arrived before the deadline"
            assert not done
            assert error is not None and error["code"] == "request_timeout", error
            # the connection (or a new one) still works
            assert c.post(URL, json={"model": "emu/m", "prompt": "hi"}).status_code == 200
        assert upstream.wait_for_disconnect(1.0)
    finally:
        proxy.stop()
