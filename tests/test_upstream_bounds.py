"""What an upstream may cost us, and what it may make us relay (issue 9 #21, #22, #24): bodies
and SSE events past their caps are a 502 naming the provider, a silent stream is cut, and only
valid UTF-8 in the spec's chunk shape reaches the client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.completion_sse import chunks_and_error, parse_sse
from tests.conftest import KEY_A, UPSTREAM_KEY, start_proxy
from tests.emulators.openai_server import OpenAIEmulator, Reply

URL = "/v2/router/completions"


@pytest.fixture(scope="module")
def bounded(emulator: OpenAIEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    providers = f"""
providers:
  emu: {{type: openai, base_url: "{emulator.base_url}", api_key: "{UPSTREAM_KEY}"}}
  small:
    type: openai
    base_url: "{emulator.base_url}"
    api_key: "{UPSTREAM_KEY}"
    max_response_bytes: 4096
    max_event_bytes: 2048
    stream_idle_timeout_seconds: 0.5
"""
    proxy = start_proxy(emulator, tmp_path_factory.mktemp("bounds"), extra=providers)
    with httpx.Client(base_url=proxy.url, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30) as client:
        yield client
    proxy.stop()


def post(client: httpx.Client, **fields: Any) -> httpx.Response:
    return client.post(URL, json={"model": "small/m", "prompt": "hi", **fields})


def stream(client: httpx.Client, **fields: Any) -> tuple[httpx.Response, list[dict], dict | None, bool]:
    with client.stream("POST", URL, json={"model": "small/m", "prompt": "hi", "stream": True, **fields}) as r:
        raw = r.read()
    if not r.headers["content-type"].startswith("text/event-stream"):
        return r, [], None, False
    payloads, done = parse_sse(raw)
    chunks, error = chunks_and_error(payloads)
    return r, chunks, error, done


def test_an_answer_past_the_cap_is_a_502(bounded, upstream):
    upstream.script("m", Reply(text="x" * 10_000))
    r = post(bounded)
    assert r.status_code == 502
    error = r.json()["error"]
    assert error["code"] == "provider_error" and "small/m" in error["message"] and "4096" in error["message"]


def test_an_answer_past_the_cap_falls_back(bounded, upstream):
    upstream.script("m", Reply(text="x" * 10_000))
    upstream.script("ok", Reply(text="fine"))
    r = post(bounded, fallbacks=[{"model": "emu/ok"}])
    assert r.status_code == 200 and r.json()["choices"][0]["text"] == "fine"


def test_an_sse_event_past_the_cap_is_a_502(bounded, upstream):
    upstream.script("m", Reply(raw_body=b"data: " + b"x" * 50_000))  # never ends its line
    r, _, _, _ = stream(bounded)
    assert r.status_code == 502
    assert "2048" in r.json()["error"]["message"]


def test_a_stream_silent_past_the_idle_timeout_is_cut_in_band(bounded, upstream):
    upstream.script("m", Reply(text="one two three four", chunks=4, chunk_delay_s=2.0))
    r, chunks, error, done = stream(bounded)
    assert r.status_code == 200 and chunks, "the first chunk arrived before the silence"
    assert error is not None and error["code"] == "provider_timeout"
    assert not done


def chunk(**fields: Any) -> bytes:
    return b"data: " + json.dumps(fields).encode() + b"\n\n"


def test_invalid_utf8_is_never_relayed(bounded, upstream):
    bad = (b'data: {"id":"c","object":"text_completion","created":1,"model":"m","choices":'
           b'[{"text":"\xff\xfe","index":0,"finish_reason":null}]}\n\n')
    upstream.script("m", Reply(raw_body=bad + b"data: [DONE]\n\n"))
    r, _, _, _ = stream(bounded)
    assert r.status_code == 502
    assert "invalid response" in r.json()["error"]["message"]


def test_chunks_missing_spec_fields_are_repaired(bounded, upstream):
    body = (chunk(choices=[{"text": "Hi", "index": 0, "finish_reason": None}])
            + chunk(choices=[{"text": "!", "index": 0, "finish_reason": "stop"}]) + b"data: [DONE]\n\n")
    upstream.script("m", Reply(raw_body=body))
    r, chunks, error, done = stream(bounded)
    assert r.status_code == 200 and error is None and done
    for c in chunks:  # chunks_and_error validated each against the spec's chunk schema
        assert c["model"] == "m" and c["object"] == "text_completion" and c["created"] > 0
    assert "".join(c["choices"][0]["text"] for c in chunks) == "Hi!"
