"""Overhead tells the truth (issue 9 #1-#3): it is the proxy's own time, not retry backoff, not a
stream's length, and a client that leaves still gets its attempt logged."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.emulators.openai_server import Reply

URL = "/v2/router/completions"


def last_request_event(proxy, request_id: str) -> dict:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for line in reversed(proxy.log().splitlines()):
            if request_id in line and line.startswith("{"):
                event = json.loads(line)
                if event.get("event") == "request":
                    return event
        time.sleep(0.05)
    raise AssertionError(f"no request event for {request_id}")


def test_retry_backoff_is_not_overhead(client, upstream):
    upstream.script("m", Reply(status=429, headers={"retry-after": "1"}), Reply())
    r = client.post(URL, json={"model": "emu/m", "prompt": "hi", "retry": {"count": 1}})
    assert r.status_code == 200 and r.headers["x-switchyard-attempts"] == "2"
    assert float(r.headers["x-switchyard-overhead-ms"]) < 200, "a 1 s Retry-After wait is not the proxy's time"


@pytest.mark.parametrize("chunks", [4, 400])
def test_stream_overhead_does_not_grow_with_length(client, upstream, proxy, chunks):
    upstream.script("m", Reply(text=" ".join(["tok"] * chunks), chunks=chunks, chunk_delay_s=0.001))
    rid = f"overhead-stream-{chunks}"
    with client.stream("POST", URL, json={"model": "emu/m", "prompt": "hi", "stream": True},
                       headers={"X-Request-ID": rid}) as r:
        r.read()
    event = last_request_event(proxy, rid)
    assert event["status"] == 200
    assert event["overhead_ms"] < 25, event  # ~0.2 ms a chunk before: 80 ms for 400 chunks


def test_a_client_that_leaves_keeps_its_attempt_in_the_log(upstream, proxy):
    from tests.conftest import KEY_A

    upstream.script("slow", Reply(delay_s=3))
    rid = "overhead-cancelled-1"
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(proxy.url + URL, json={"model": "emu/slow", "prompt": "hi"}, timeout=0.5,
                   headers={"Authorization": f"Bearer {KEY_A}", "X-Request-ID": rid})
    event = last_request_event(proxy, rid)
    assert event["status"] == 499
    assert [(a["model"], a["status"]) for a in event["attempts"]] == [("emu/slow", 499)]
    assert event["attempts"][0]["ms"] >= 400
    assert event["overhead_ms"] < 100, "the wait was the provider's, not ours"
