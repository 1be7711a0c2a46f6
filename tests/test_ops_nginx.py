"""Real nginx, with the shipped configs/nginx/switchyard.conf, in front of the real proxy."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import KEY_A, start_proxy
from tests.emulators.openai_server import OpenAIEmulator, Reply
from tests.ops_tools import read_sse, start_nginx, stop

URL = "/v2/router/completions"


@pytest.fixture()
def nginx(upstream: OpenAIEmulator, tmp_path: Path) -> Iterator[httpx.Client]:
    proxy = start_proxy(upstream, tmp_path / "proxy")
    (tmp_path / "nginx").mkdir()
    try:
        proc, port = start_nginx(tmp_path / "nginx", proxy.port)
    except BaseException:
        proxy.stop()
        raise
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                          headers={"Authorization": f"Bearer {KEY_A}"}) as client:
            yield client
    finally:
        stop(proc)
        proxy.stop()


def test_sse_chunks_are_not_buffered(nginx: httpx.Client, upstream: OpenAIEmulator) -> None:
    upstream.script("slow", Reply(text="one two three four five six", chunks=6, chunk_delay_s=0.3))
    with nginx.stream("POST", URL, json={"model": "emu/slow", "prompt": "hi", "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = read_sse(r)
    assert events[-1][1] == "[DONE]"
    content = [t for t, data in events[:-1] if json.loads(data)["choices"]]
    assert len(content) == 6
    # The proxy holds the last content chunk until the upstream's usage arrives (the final chunk
    # carries the usage), so only the gaps before it are the upstream's 0.3 s.
    gaps = [b - a for a, b in itertools.pairwise(content[:-1])]
    # Buffered by nginx, they would arrive in one burst at the end (gaps ~0).
    assert len(gaps) == 4 and all(0.2 < gap < 0.6 for gap in gaps), gaps
    assert events[-1][0] - content[0] > 1.2


def test_non_stream_request_passes(nginx: httpx.Client, upstream: OpenAIEmulator) -> None:
    r = nginx.post(URL, json={"model": "emu/plain", "prompt": "hi", "max_tokens": 5})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["text"] == "Hello from the emulator"
    assert r.headers["x-switchyard-model"] == "emu/plain"


def test_request_id_round_trips(nginx: httpx.Client, upstream: OpenAIEmulator) -> None:
    r = nginx.post(URL, json={"model": "emu/rid", "prompt": "hi"}, headers={"X-Request-ID": "client-rid-42"})
    assert r.status_code == 200, r.text
    assert r.headers["x-request-id"] == "client-rid-42"
    assert upstream.requests[-1].headers["x-request-id"] == "client-rid-42"
    # None sent: nginx makes one, and the proxy, the upstream and the client all see the same.
    r = nginx.post(URL, json={"model": "emu/rid", "prompt": "hi"})
    made = r.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    assert upstream.requests[-1].headers["x-request-id"] == made


def test_metrics_are_not_exposed(nginx: httpx.Client) -> None:
    assert nginx.get("/metrics").status_code == 404
    assert nginx.get("/healthz").status_code == 200
