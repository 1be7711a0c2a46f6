"""Malformed HTTP and slow clients over raw sockets (issue 9, items 14, 17, 19): answered in our JSON
error shape where a response is possible, logged as one JSON line without the raw bytes (so never
an Authorization value), no traceback anywhere, and bounded in time and in connections."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import KEY_A, proxy_config
from tests.emulators.openai_server import OpenAIEmulator
from tests.proxy_process import ProxyProcess

URL = "/v2/router/completions"
LIMITS = """  shutdown_grace_seconds: 5
  header_timeout_seconds: 1
  idle_timeout_seconds: 2
  body_timeout_seconds: 1
  max_connections: 12"""


@pytest.fixture(scope="module")
def slow_proxy(emulator: OpenAIEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    config = proxy_config(emulator).replace("  shutdown_grace_seconds: 5", LIMITS)
    process = ProxyProcess(config, tmp_path_factory.mktemp("protocol")).start()
    yield process
    process.stop()


def exchange(port: int, raw: bytes, timeout: float = 5.0) -> tuple[bytes, float]:
    """Send `raw`, read until the server closes; (reply, seconds until closed)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        return read_all(sock), time.monotonic() - started


def read_all(sock: socket.socket) -> bytes:
    reply = b""
    try:
        while chunk := sock.recv(65536):
            reply += chunk
    except ConnectionResetError:
        pass
    return reply


def status_and_error(reply: bytes) -> tuple[int, dict]:
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert headers.get("content-type", "").startswith("application/json"), reply[:400]
    assert headers.get("x-request-id"), reply[:400]
    payload = json.loads(body)
    assert list(payload) == ["error"] and set(payload["error"]) == {"message", "type", "param", "code"}, payload
    return int(lines[0].split()[1]), payload["error"]


def head(*lines: str, method: str = "POST", path: str = URL) -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: x\r\n" + "".join(f"{line}\r\n" for line in lines)).encode()


AUTH = f"Authorization: Bearer {KEY_A}"
MALFORMED = [
    # (raw request, status): a header over 8 KB, too many headers, control bytes, bare CR/LF, framing.
    (head(AUTH, "X-Big: " + "b" * 9000) + b"\r\n", 431),
    (head(AUTH, *[f"X-H{i}: v" for i in range(101)]) + b"\r\n", 431),
    (head(AUTH + " \x01") + b"\r\n", 400),
    (head(AUTH) + b"X-Bare: a\rb\r\n\r\n", 400),
    (head(AUTH, "Content-Length: 12abc") + b"\r\n", 400),
    (head(AUTH, "Content-Length: 5", "Transfer-Encoding: chunked") + b"\r\nzz\r\n", 400),
    (head(AUTH, method="G@T") + b"\r\n", 400),
    (head(AUTH, path="/" + "p" * 9000) + b"\r\n", 414),
]


@pytest.mark.parametrize("raw,status", MALFORMED, ids=["big-header", "101-headers", "ctl-byte", "bare-cr",
                                                       "bad-length", "cl-and-te", "bad-method", "long-url"])
def test_protocol_errors_are_json_and_logged_once_without_the_key(slow_proxy, raw, status):
    before = len(slow_proxy.log().splitlines())
    reply, _ = exchange(slow_proxy.port, raw)
    got, error = status_and_error(reply)
    assert got == status, reply[:300]
    assert error["code"] == "invalid_request_body" and KEY_A not in error["message"]
    assert "b" * 100 not in error["message"] and "\x01" not in error["message"]  # nothing of the raw line
    time.sleep(0.3)
    new = slow_proxy.log().splitlines()[before:]
    assert KEY_A not in "\n".join(new) and "Traceback" not in "\n".join(new), new
    events = [json.loads(line) for line in new]  # every line is JSON: nothing raw on stderr
    errors = [e for e in events if e["event"] == "protocol error"]
    assert len(errors) == 1 and errors[0]["status"] == status, events


def test_an_unknown_method_is_400_in_our_shape(slow_proxy):
    reply, _ = exchange(slow_proxy.port, head(AUTH, "Content-Length: 0", method="FOO") + b"\r\n")
    status, error = status_and_error(reply)
    assert status == 400 and "unknown or malformed HTTP method" in error["message"]


def test_a_request_head_sent_one_byte_at_a_time_is_cut_off(slow_proxy):
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", slow_proxy.port), timeout=5) as sock:
        sock.sendall(b"POST " + URL.encode() + b" HTTP/1.1\r\n")
        sent_until_closed = 0
        try:
            for byte in b"X-Slow: " + b"s" * 40:
                time.sleep(0.2)
                sock.send(bytes([byte]))
                sent_until_closed += 1
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = read_all(sock)
    elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 3.0, elapsed  # header_timeout_seconds: 1, not the 8 s the client wanted
    assert status_and_error(reply)[0] == 408


def test_an_idle_connection_is_closed(slow_proxy):
    with socket.create_connection(("127.0.0.1", slow_proxy.port), timeout=6) as sock:
        started = time.monotonic()
        assert read_all(sock) == b""  # closed without a word: nothing was asked
        assert 1.5 < time.monotonic() - started < 4.5  # idle_timeout_seconds: 2


def test_a_body_that_trickles_is_408(slow_proxy):
    body = json.dumps({"model": "emu/m", "prompt": "x"}).encode()
    raw = head(AUTH, "Content-Type: application/json", f"Content-Length: {len(body)}") + b"\r\n" + body[:5]
    reply, elapsed = exchange(slow_proxy.port, raw)
    got, error = status_and_error(reply)
    assert (got, error["code"]) == (408, "request_timeout") and elapsed < 3


def test_connections_past_the_cap_get_503_and_the_proxy_recovers(slow_proxy):
    held = [socket.create_connection(("127.0.0.1", slow_proxy.port), timeout=5) for _ in range(12)]
    try:
        time.sleep(0.2)
        reply, _ = exchange(slow_proxy.port, b"")
        got, error = status_and_error(reply)
        assert (got, error["code"]) == (503, "server_overloaded")
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)
    r = httpx.get(f"{slow_proxy.url}/healthz", timeout=5)
    assert r.status_code == 200


def test_a_normal_request_still_works(slow_proxy, upstream):
    r = httpx.post(f"{slow_proxy.url}{URL}", json={"model": "emu/m", "prompt": "x"},
                   headers={"Authorization": f"Bearer {KEY_A}"}, timeout=5)
    assert r.status_code == 200, r.text


def test_expect_100_continue_is_answered_before_the_body(slow_proxy, upstream):
    """curl sends `Expect: 100-continue` with a large body and waits for the interim answer."""
    body = json.dumps({"model": "emu/m", "prompt": "x"}).encode()
    raw = head(AUTH, "Content-Type: application/json", f"Content-Length: {len(body)}", "Expect: 100-continue",
               "Connection: close") + b"\r\n"
    with socket.create_connection(("127.0.0.1", slow_proxy.port), timeout=5) as sock:
        sock.sendall(raw)
        assert sock.recv(4096).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(body)
        reply = read_all(sock)
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]


@pytest.mark.parametrize("path", [URL + "?trace=1", "/v2/router/%63ompletions"])
def test_a_route_reached_by_a_query_or_an_escape_is_served_too(slow_proxy, upstream, path):
    r = httpx.post(f"{slow_proxy.url}{path}", json={"model": "emu/m", "prompt": "x"},
                   headers={"Authorization": f"Bearer {KEY_A}"}, timeout=5)
    assert r.status_code == 200, r.text
