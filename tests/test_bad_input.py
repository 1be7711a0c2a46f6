"""Client mistakes and hostile inputs that probing found (issue 9, items 13, 15, 16, 18, 24): each is a
4xx in our error shape naming the field, decided before any upstream call, never a 500."""

from __future__ import annotations

import gzip
import json
import socket
import time
from typing import Any

import pytest

from tests.proxy_process import ProxyProcess
from tests.test_request_errors import BODY, INVALID, assert_error, post

URL = "/v2/router/completions"


def log_events(proxy: ProxyProcess) -> list[dict[str, Any]]:
    time.sleep(0.25)  # request lines are written in batches every 100 ms
    return [json.loads(line) for line in proxy.log().splitlines() if line.startswith("{")]


@pytest.mark.parametrize("body,param", [
    ({"model": "emu/a\nb", "prompt": "x"}, "model"),
    ({"model": "emu/a\r\nSet-Cookie: x", "prompt": "x"}, "model"),
    ({"model": "emu/a\u0000", "prompt": "x"}, "model"),
    ({"model": "emu/a\u007f", "prompt": "x", "stream": True}, "model"),
    ({"model": "emu/a\u0085b", "prompt": "x"}, "model"),
    ({"model": "emu/a\u2028b", "prompt": "x"}, "model"),
    ({"model": "emu/m", "prompt": "x", "fallbacks": [{"model": "emu/b\n"}]}, "fallbacks[0].model"),
    ({"prompt": "x", "load_balancer": {"type": "weight_based", "models": [{"model": "emu/\tb", "weight": 1}]}},
     "load_balancer.models[0].model"),
    ({"model": "emu/" + "m" * 300, "prompt": "x"}, "model"),
])
def test_control_characters_in_model_names_are_refused_before_any_call(client, upstream, body, param):
    r = post(client, body)
    error = assert_error(r, 400, INVALID, param, BODY)
    assert "\n" not in error["message"] and "Set-Cookie" not in r.headers.get("set-cookie", "")
    assert upstream.requests == []


def test_non_utf8_authorization_is_401(proxy, upstream):
    body = json.dumps({"model": "emu/m", "prompt": "x"}).encode()
    head = (f"POST {URL} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n").encode()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(head + b"Authorization: Bearer \xe9\xff\r\n\r\n" + body)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    status_line, _, rest = reply.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 401 Unauthorized", reply[:300]
    payload = json.loads(rest.split(b"\r\n\r\n", 1)[1])
    assert payload["error"]["code"] == "invalid_api_key"
    assert upstream.requests == []


def test_gzip_bodies(client, upstream):
    good = gzip.compress(json.dumps({"model": "emu/m", "prompt": "zipped"}).encode())
    r = client.post(URL, content=good, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert r.status_code == 200, r.text
    assert upstream.requests[-1].body["prompt"] == "zipped"
    r = client.post(URL, content=b"this is not gzip at all",
                    headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    error = assert_error(r, 400, INVALID, None, BODY)
    assert "gzip" in error["message"]


@pytest.mark.parametrize("field,value", [
    ("seed", 2**64), ("seed", 2**64 + 5), ("seed", -(2**63) - 1), ("seed", 2**63),
    ("max_tokens", 2**64), ("max_tokens", 2**63),
])
def test_integers_outside_int64_are_400_naming_the_field(client, upstream, field, value):
    body = {"model": "emu/m", "prompt": "x", "cache": {"type": "exact_match"}, field: value}
    assert_error(post(client, body), 400, INVALID, field, BODY)
    assert upstream.requests == []


def test_int64_bounds_themselves_are_accepted(client, upstream):
    for seed in (2**63 - 1, -(2**63)):
        r = post(client, {"model": "emu/m", "prompt": "x", "cache": {"type": "exact_match"}, "seed": seed})
        assert r.status_code == 200, r.text


def test_template_expansion_is_capped_before_rendering(client, upstream, proxy):
    bomb = {"model": "emu/m", "prompt": "{{a}}" * 10_000, "orq": {"inputs": {"a": "x" * 10_000}}}
    before = proxy.rss_bytes()
    started = time.monotonic()
    r = post(client, bomb)
    error = assert_error(r, 413, INVALID, "orq.inputs", "payload_too_large")
    assert "100000000" in error["message"]  # the size it would have been, computed, not rendered
    assert time.monotonic() - started < 1.0
    assert proxy.rss_bytes() - before < 20 * 1024 * 1024
    assert upstream.requests == []
    # Under the cap it renders as before.
    r = post(client, {"model": "emu/m", "prompt": "{{a}}" * 100, "orq": {"inputs": {"a": "y" * 100}}})
    assert r.status_code == 200, r.text
    assert upstream.requests[-1].body["prompt"] == "y" * 10_000


@pytest.mark.parametrize("build,param", [
    (lambda n: {"model": "emu/m", "fallbacks": [{"model": "emu/f"}] * n}, "fallbacks"),
    (lambda n: {"model": "emu/m", "orq": {"fallbacks": [{"model": "emu/f"}] * n}}, "orq.fallbacks"),
    (lambda n: {"load_balancer": {"type": "weight_based", "models": [{"model": "emu/w", "weight": 0.5}] * (2 * n)}},
     "load_balancer.models"),
])
def test_fallbacks_and_balanced_models_are_capped(client, upstream, build, param):
    """16 fallbacks and 32 balanced models at most (README, "Routing")."""
    r = post(client, {"prompt": "x", **build(17)})
    error = assert_error(r, 400, INVALID, param, BODY)
    assert "length <= " in error["message"]
    assert upstream.requests == []
    assert post(client, {"prompt": "x", **build(16)}).status_code == 200


def test_client_fields_are_capped_in_the_log(client, upstream, proxy):
    tags = [f"tag-{i}-" + "t" * 80 for i in range(500)]
    r = post(client, {"model": "emu/m", "prompt": "x", "name": "n" * 5000,
                      "orq": {"thread": {"id": "i" * 5000, "tags": tags}}})
    assert r.status_code == 200, r.text
    line = next(e for e in reversed(log_events(proxy)) if e.get("event") == "request" and e.get("thread_id"))
    assert len(json.dumps(line)) < 20_000
    assert line["thread_id"].startswith("i" * 256) and "(+4744 chars)" in line["thread_id"]
    assert len(line["thread_tags"]) == 33 and line["thread_tags"][-1] == "…(+468 tags)"


def test_a_lone_surrogate_is_named_not_called_truncated(client, upstream):
    r = post(client, b'{"model": "emu/m", "prompt": "a\\ud800b"}')
    error = assert_error(r, 400, INVALID, None, BODY)
    assert "surrogate" in error["message"] and "truncated" not in error["message"]
    assert post(client, b'{"model": "emu/m", "prompt": "a\\ud83d\\ude00b"}').status_code == 200


def test_catch_all_404_and_405_are_in_the_request_log(client, proxy):
    assert client.get("/nope-9").status_code == 404
    assert client.get(URL, headers={"X-Request-ID": "rid-405-check"}).status_code == 405
    events = [e for e in log_events(proxy) if e.get("event") == "request"]
    assert any(e["route"] == "/nope-9" and e["status"] == 404 for e in events)
    assert any(e["request_id"] == "rid-405-check" and e["status"] == 405 for e in events)


def test_template_expansion_in_chat_messages_is_capped_too(client, upstream):
    bomb = {"model": "emu/m", "messages": [{"role": "user", "content": "{{a}}" * 10_000}],
            "orq": {"inputs": {"a": "x" * 10_000}}}
    r = client.post("/v2/router/chat/completions", json=bomb)
    assert_error(r, 413, INVALID, "orq.inputs", "payload_too_large")
    assert upstream.requests == []
