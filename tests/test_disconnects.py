"""Clients that close a stream mid-way (found by benchmarks/soak.py): whether the disconnect reaches
the handler as a cancellation or as a failed write, it is a 499 in the log, never an "unhandled
error" with a traceback."""

from __future__ import annotations

import json
import socket
import time

from tests.conftest import KEY_A
from tests.emulators.openai_server import Reply

URL = "/v2/router/completions"


def test_streams_dropped_after_the_first_event_are_499_without_tracebacks(proxy, upstream):
    upstream.script("drop", Reply(text="t " * 200, chunks=200, chunk_delay_s=0.001))
    before = len(proxy.log())
    body = json.dumps({"model": "emu/drop", "prompt": "x", "stream": True}).encode()
    head = (f"POST {URL} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY_A}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    drops = 60
    for _ in range(drops):
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            sock.sendall(head + body)
            seen = b""
            while b"data: " not in seen:
                chunk = sock.recv(4096)
                assert chunk, seen
                seen += chunk
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
    time.sleep(1.0)
    log = proxy.log()[before:]
    assert "unhandled error" not in log and "Traceback" not in log, log[:3000]
    statuses = [json.loads(line)["status"] for line in log.splitlines()
                if line.startswith("{") and '"requested_model":"emu/drop"' in line]
    assert len(statuses) == drops and set(statuses) == {499}, statuses
