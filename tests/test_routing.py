"""Routing semantics (DESIGN.md "Routing semantics", issue 3) over real sockets: retry, fallback,
per-attempt timeout, the request deadline, the deprecated `orq` block and streams.

Every test asserts the exact sequence of upstream calls the emulator recorded. `emu` and `emu2`
are both the emulator, so a recorded call shows the upstream model id without its provider.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import KEY_A, proxy_config
from tests.emulators.openai_server import OpenAIEmulator, Reply
from tests.proxy_process import ProxyProcess

URL = "/v2/router/completions"
TEXT = "Hello from the emulator"


def calls(upstream: OpenAIEmulator) -> list[str | None]:
    return [r.model for r in upstream.requests if r.path == "/v1/completions"]


def gap(upstream: OpenAIEmulator, i: int) -> float:
    """Seconds between the i-th and the (i+1)-th upstream call."""
    recorded = [r for r in upstream.requests if r.path == "/v1/completions"]
    return recorded[i + 1].received_at - recorded[i].received_at


def post(client: httpx.Client, **body: object) -> httpx.Response:
    body.setdefault("prompt", "hi")
    return client.post(URL, json=body)


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


def stream(client: httpx.Client, **body: object) -> tuple[httpx.Response, list[str]]:
    """POST a stream request; the response and its raw `data:` payloads in order."""
    body.setdefault("prompt", "hi")
    with client.stream("POST", URL, json={**body, "stream": True}) as response:
        text = response.read().decode()
    events = []
    for block in text.split("\n\n"):
        if not block:
            continue
        assert block.startswith("data: "), repr(block)
        events.append(block[len("data: "):])
    return response, events


def assert_clean_stream(response: httpx.Response, events: list[str]) -> None:
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert events[-1] == "[DONE]", events
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks and all("error" not in c for c in chunks), chunks
    assert "".join(ch["text"] for c in chunks for ch in c["choices"]) == TEXT
    assert all(ch["finish_reason"] for c in chunks for ch in c["choices"])


# -- retry ----------------------------------------------------------------------------------------------

def test_429_then_200_retries_once_honouring_retry_after(client, upstream):
    upstream.script("ra", Reply(status=429, headers={"retry-after": "0.3"}), Reply())
    r = post(client, model="emu/ra", retry={"count": 2, "on_codes": [429]})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["text"] == TEXT
    assert calls(upstream) == ["ra", "ra"]
    assert r.headers["x-switchyard-model"] == "emu/ra"
    assert r.headers["x-switchyard-attempts"] == "2"
    assert 0.3 <= gap(upstream, 0) < 0.8


def test_retry_without_retry_after_uses_the_configured_backoff(client, upstream):
    # backoff_base_ms 20: the first retry waits between 10 and 20 ms (equal jitter).
    upstream.script("bo", Reply(status=429), Reply())
    r = post(client, model="emu/bo", retry={"count": 1, "on_codes": [429]})
    assert r.status_code == 200, r.text
    assert calls(upstream) == ["bo", "bo"]
    assert r.headers["x-switchyard-attempts"] == "2"
    assert 0.009 < gap(upstream, 0) < 0.15


def test_backoff_grows_between_retries(client, upstream):
    # Retries 1, 2, 3 wait within [10, 20], [20, 40], [40, 80] ms; the sum is at least 70 ms.
    upstream.script("grow", Reply(status=429), Reply(status=429), Reply(status=429), Reply())
    r = post(client, model="emu/grow", retry={"count": 3, "on_codes": [429]})
    assert r.status_code == 200, r.text
    assert calls(upstream) == ["grow"] * 4
    assert gap(upstream, 0) > 0.009 and gap(upstream, 1) > 0.019 and gap(upstream, 2) > 0.039
    assert gap(upstream, 0) + gap(upstream, 1) + gap(upstream, 2) < 0.6


def test_retry_after_is_capped(client, upstream):
    # retry_after_cap_seconds: 2 in the test config; the upstream asks for 30 s.
    upstream.script("cap", Reply(status=429, headers={"retry-after": "30"}), Reply())
    started = time.monotonic()
    r = post(client, model="emu/cap", retry={"count": 1, "on_codes": [429]})
    elapsed = time.monotonic() - started
    assert r.status_code == 200, r.text
    assert calls(upstream) == ["cap", "cap"]
    assert 1.95 <= gap(upstream, 0) < 2.6
    assert elapsed < 3.0


def test_count_is_retries_after_the_first_try(client, upstream):
    upstream.script("always429", Reply(status=429))
    r = post(client, model="emu/always429", retry={"count": 2, "on_codes": [429]})
    assert calls(upstream) == ["always429"] * 3
    assert r.status_code == 429
    message = error_of(r)["message"]
    assert message.count("emu/always429 → 429") == 3, message
    assert "3 attempts" in message


def test_status_not_in_on_codes_is_not_retried(client, upstream):
    upstream.script("s500", Reply(status=500))
    r = post(client, model="emu/s500", retry={"count": 2, "on_codes": [429]})
    assert r.status_code == 500
    assert calls(upstream) == ["s500"]
    error_of(r)


def test_status_not_in_on_codes_falls_back(client, upstream):
    upstream.script("s500b", Reply(status=500))
    r = post(client, model="emu/s500b", retry={"count": 2, "on_codes": [429]},
             fallbacks=[{"model": "emu2/good"}])
    assert r.status_code == 200, r.text
    assert calls(upstream) == ["s500b", "good"]
    assert r.headers["x-switchyard-model"] == "emu2/good"
    assert r.headers["x-switchyard-attempts"] == "2"


def test_no_retry_object_means_no_retries(client, upstream):
    upstream.script("noretry", Reply(status=429), Reply())
    r = post(client, model="emu/noretry")
    assert r.status_code == 429
    assert calls(upstream) == ["noretry"]
    assert error_of(r)["code"] == "rate_limit_exceeded"


# -- fallback -------------------------------------------------------------------------------------------

def test_500s_on_primary_then_fallback_serves(client, upstream):
    upstream.script("primary", Reply(status=500))
    r = post(client, model="emu/primary", fallbacks=[{"model": "emu2/good"}])
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["text"] == TEXT
    assert calls(upstream) == ["primary", "good"]
    assert r.headers["x-switchyard-model"] == "emu2/good"
    assert r.headers["x-switchyard-attempts"] == "2"


def test_fallbacks_are_tried_in_order(client, upstream):
    upstream.script("p1", Reply(status=502))
    upstream.script("f1", Reply(status=429))
    r = post(client, model="emu/p1", fallbacks=[{"model": "emu2/f1"}, {"model": "emu/f2"}, {"model": "emu/f3"}])
    assert r.status_code == 200, r.text
    assert calls(upstream) == ["p1", "f1", "f2"]
    assert r.headers["x-switchyard-model"] == "emu/f2"
    assert r.headers["x-switchyard-attempts"] == "3"


def test_each_fallback_gets_its_own_retry_budget(client, upstream):
    upstream.script("p503", Reply(status=503))
    upstream.script("f503", Reply(status=503), Reply())
    r = post(client, model="emu/p503", retry={"count": 1, "on_codes": [503]}, fallbacks=[{"model": "emu2/f503"}])
    assert r.status_code == 200, r.text
    assert calls(upstream) == ["p503", "p503", "f503", "f503"]
    assert r.headers["x-switchyard-model"] == "emu2/f503"
    assert r.headers["x-switchyard-attempts"] == "4"


def test_connection_error_falls_back(client, upstream):
    r = post(client, model="dead/x", fallbacks=[{"model": "emu/good"}])
    assert r.status_code == 200, r.text
    assert calls(upstream) == ["good"]
    assert r.headers["x-switchyard-model"] == "emu/good"
    assert r.headers["x-switchyard-attempts"] == "2"


@pytest.mark.parametrize("status", [401, 403])
def test_provider_refusing_our_credentials_is_a_502_that_falls_back(client, upstream, status):
    """A provider's 401/403 is about the proxy's key for it, not the client's: SDKs must not
    report "invalid API key", and another provider may still answer."""
    upstream.script("bad", Reply(status=status))
    r = post(client, model="emu/bad", fallbacks=[{"model": "emu2/good"}])
    assert r.status_code == 200 and calls(upstream) == ["bad", "good"]
    upstream.reset()
    upstream.script("bad", Reply(status=status))
    r = post(client, model="emu/bad")
    assert r.status_code == 502
    error = error_of(r)
    assert error["code"] == "provider_error" and error["type"] == "api_error"
    assert "emu/bad" in error["message"] and "credentials" in error["message"]


@pytest.mark.parametrize("status", [400, 404, 422])
def test_client_error_from_upstream_is_returned_as_is(client, upstream, status):
    upstream.script("bad", Reply(status=status, error_body={"error": {
        "message": f"upstream says {status}", "type": "invalid_request_error", "param": "prompt", "code": None}}))
    r = post(client, model="emu/bad", retry={"count": 2, "on_codes": [429, 500]}, fallbacks=[{"model": "emu2/good"}])
    assert r.status_code == status
    assert calls(upstream) == ["bad"]  # neither retried nor fallen back
    error = error_of(r)
    assert error["message"] == f"upstream says {status}"
    assert error["param"] == "prompt"


def test_client_error_listed_in_on_codes_is_retried_but_never_falls_back(client, upstream):
    # DESIGN.md 2: retries follow `on_codes` literally; 4: a 400 never moves to a fallback.
    upstream.script("bad400", Reply(status=400))
    r = post(client, model="emu/bad400", retry={"count": 1, "on_codes": [400]}, fallbacks=[{"model": "emu2/good"}])
    assert r.status_code == 400
    assert calls(upstream) == ["bad400", "bad400"]


def test_all_failing_returns_the_last_status_and_lists_every_attempt(client, upstream):
    upstream.script("p", Reply(status=500))
    upstream.script("f", Reply(status=503))
    r = post(client, model="emu/p", fallbacks=[{"model": "emu2/f"}, {"model": "dead/x"}])
    assert calls(upstream) == ["p", "f"]  # dead/x refuses the connection, so it is never recorded
    assert r.status_code == 502
    message = error_of(r)["message"]
    assert "3 attempts" in message
    positions = [message.index(part) for part in ("emu/p → 500", "emu2/f → 503", "dead/x → 502")]
    assert positions == sorted(positions), message


# -- per-attempt timeout ------------------------------------------------------------------------------

def test_slow_primary_is_cut_by_call_timeout_then_fallback_serves(client, upstream):
    upstream.script("slow", Reply(delay_s=2))
    started = time.monotonic()
    r = post(client, model="emu/slow", timeout={"call_timeout": 200}, fallbacks=[{"model": "emu2/good"}])
    elapsed = time.monotonic() - started
    assert r.status_code == 200, r.text
    assert calls(upstream) == ["slow", "good"]
    assert r.headers["x-switchyard-model"] == "emu2/good"
    assert r.headers["x-switchyard-attempts"] == "2"
    assert 0.2 <= elapsed < 1.0
    assert 0.19 <= gap(upstream, 0) < 0.6


def test_timed_out_attempt_counts_as_408_for_on_codes(client, upstream):
    upstream.script("slow408", Reply(delay_s=2))
    started = time.monotonic()
    r = post(client, model="emu/slow408", timeout={"call_timeout": 200}, retry={"count": 1, "on_codes": [408]},
             fallbacks=[{"model": "emu2/good"}])
    elapsed = time.monotonic() - started
    assert r.status_code == 200, r.text
    assert calls(upstream) == ["slow408", "slow408", "good"]
    assert r.headers["x-switchyard-attempts"] == "3"
    assert 0.4 <= elapsed < 1.5


def test_timeout_without_fallback_is_a_408(client, upstream):
    upstream.script("slowonly", Reply(delay_s=2))
    started = time.monotonic()
    r = post(client, model="emu/slowonly", timeout={"call_timeout": 200})
    assert time.monotonic() - started < 1.0
    assert r.status_code == 408
    assert calls(upstream) == ["slowonly"]
    assert error_of(r)["code"] == "provider_timeout"


def test_each_fallback_gets_its_own_call_timeout(client, upstream):
    # Both are slower than the timeout: two cut attempts, each bounded on its own.
    upstream.script("slowa", Reply(delay_s=2))
    upstream.script("slowb", Reply(delay_s=2))
    started = time.monotonic()
    r = post(client, model="emu/slowa", timeout={"call_timeout": 200}, fallbacks=[{"model": "emu2/slowb"}])
    elapsed = time.monotonic() - started
    assert r.status_code == 408
    assert calls(upstream) == ["slowa", "slowb"]
    assert 0.4 <= elapsed < 1.2
    message = error_of(r)["message"]
    assert "emu/slowa → 408" in message and "emu2/slowb → 408" in message


# -- the whole-request deadline ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def short_proxy(emulator, tmp_path_factory) -> Iterator[ProxyProcess]:
    config = proxy_config(emulator)
    assert "max_request_seconds: 20" in config
    process = ProxyProcess(config.replace("max_request_seconds: 20", "max_request_seconds: 1"),
                           tmp_path_factory.mktemp("short-deadline"))
    process.start()
    yield process
    process.stop()


def test_max_request_seconds_bounds_the_whole_request_backoff_included(short_proxy, upstream):
    upstream.script("limited", Reply(status=429, headers={"retry-after": "0.6"}))
    with httpx.Client(base_url=short_proxy.url, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=10) as c:
        started = time.monotonic()
        r = post(c, model="emu/limited", retry={"count": 5, "on_codes": [429]})
        elapsed = time.monotonic() - started
    assert elapsed < 1.5
    # t=0 try, t=0.6 retry; a second retry would start at 1.2 s, past the 1 s deadline.
    assert calls(upstream) == ["limited", "limited"]
    assert r.status_code in (429, 504)
    error_of(r)


def test_max_request_seconds_cuts_a_slow_attempt(short_proxy, upstream):
    upstream.script("tooslow", Reply(delay_s=3))
    with httpx.Client(base_url=short_proxy.url, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=10) as c:
        started = time.monotonic()
        r = post(c, model="emu/tooslow")
        elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 1.5
    assert r.status_code == 504
    assert error_of(r)["code"] == "request_timeout"
    assert calls(upstream) == ["tooslow"]


# -- the deprecated `orq` block ------------------------------------------------------------------------

def test_orq_retry_applies_without_a_top_level_one(client, upstream):
    upstream.script("oretry", Reply(status=429), Reply())
    r = post(client, model="emu/oretry", orq={"retry": {"count": 1, "on_codes": [429]}})
    assert r.status_code == 200, r.text
    assert calls(upstream) == ["oretry", "oretry"]


def test_top_level_retry_wins_over_orq_retry(client, upstream):
    upstream.script("rwin", Reply(status=429))
    r = post(client, model="emu/rwin", retry={"count": 1, "on_codes": [429]},
             orq={"retry": {"count": 3, "on_codes": [429]}})
    assert r.status_code == 429
    assert calls(upstream) == ["rwin", "rwin"]


def test_orq_fallbacks_apply_without_top_level_ones(client, upstream):
    upstream.script("ofb", Reply(status=500))
    r = post(client, model="emu/ofb", orq={"fallbacks": [{"model": "emu2/good"}]})
    assert r.status_code == 200, r.text
    assert calls(upstream) == ["ofb", "good"]
    assert r.headers["x-switchyard-model"] == "emu2/good"


def test_top_level_fallbacks_win_over_orq_fallbacks(client, upstream):
    upstream.script("fwin", Reply(status=500))
    r = post(client, model="emu/fwin", fallbacks=[{"model": "emu2/top"}], orq={"fallbacks": [{"model": "emu2/orqf"}]})
    assert r.status_code == 200, r.text
    assert calls(upstream) == ["fwin", "top"]
    assert r.headers["x-switchyard-model"] == "emu2/top"


def test_orq_timeout_applies_without_a_top_level_one(client, upstream):
    upstream.script("otime", Reply(delay_s=2))
    started = time.monotonic()
    r = post(client, model="emu/otime", orq={"timeout": {"call_timeout": 200}}, fallbacks=[{"model": "emu2/good"}])
    assert time.monotonic() - started < 1.0
    assert r.status_code == 200, r.text
    assert calls(upstream) == ["otime", "good"]


def test_top_level_timeout_wins_over_orq_timeout(client, upstream):
    upstream.script("twin", Reply(delay_s=0.4))
    r = post(client, model="emu/twin", timeout={"call_timeout": 5000}, orq={"timeout": {"call_timeout": 100}},
             fallbacks=[{"model": "emu2/good"}])
    assert r.status_code == 200, r.text
    assert calls(upstream) == ["twin"]
    assert r.headers["x-switchyard-model"] == "emu/twin"


def test_orq_load_balancer_applies_without_a_top_level_one(client, upstream):
    r = post(client, orq={"load_balancer": {"type": "weight_based", "models": [{"model": "emu/olb", "weight": 1}]}})
    assert r.status_code == 200, r.text
    assert calls(upstream) == ["olb"]
    assert r.headers["x-switchyard-model"] == "emu/olb"


def test_top_level_load_balancer_wins_over_orq_load_balancer(client, upstream):
    r = post(client, load_balancer={"type": "weight_based", "models": [{"model": "emu/lbtop", "weight": 1}]},
             orq={"load_balancer": {"type": "weight_based", "models": [{"model": "emu/lborq", "weight": 1}]}})
    assert r.status_code == 200, r.text
    assert calls(upstream) == ["lbtop"]


# -- streams --------------------------------------------------------------------------------------------

def test_stream_fallback_before_the_first_chunk_is_invisible(client, upstream):
    upstream.script("sp", Reply(status=500))
    r, events = stream(client, model="emu/sp", fallbacks=[{"model": "emu2/good"}])
    assert_clean_stream(r, events)
    assert calls(upstream) == ["sp", "good"]
    assert r.headers["x-switchyard-model"] == "emu2/good"
    assert r.headers["x-switchyard-attempts"] == "2"


def test_stream_retry_before_the_first_chunk_is_invisible(client, upstream):
    upstream.script("sr", Reply(status=429), Reply())
    r, events = stream(client, model="emu/sr", retry={"count": 1, "on_codes": [429]})
    assert_clean_stream(r, events)
    assert calls(upstream) == ["sr", "sr"]
    assert r.headers["x-switchyard-model"] == "emu/sr"
    assert r.headers["x-switchyard-attempts"] == "2"


@pytest.mark.parametrize("failure", [Reply(error_event_after_chunks=0), Reply(cut_after_chunks=0)],
                         ids=["error-event", "cut"])
def test_stream_failing_before_its_first_chunk_falls_back(client, upstream, failure):
    upstream.script("early", failure)
    r, events = stream(client, model="emu/early", fallbacks=[{"model": "emu2/good"}])
    assert_clean_stream(r, events)
    assert calls(upstream) == ["early", "good"]
    assert r.headers["x-switchyard-model"] == "emu2/good"


def test_stream_slow_to_its_first_chunk_is_cut_by_call_timeout(client, upstream):
    upstream.script("sslow", Reply(delay_s=2))
    started = time.monotonic()
    r, events = stream(client, model="emu/sslow", timeout={"call_timeout": 200}, fallbacks=[{"model": "emu2/good"}])
    assert time.monotonic() - started < 1.0
    assert_clean_stream(r, events)
    assert calls(upstream) == ["sslow", "good"]


def test_stream_call_timeout_only_bounds_the_first_chunk(client, upstream):
    # 4 chunks 150 ms apart: 450 ms in all, well past the 200 ms call_timeout, yet never cut.
    upstream.script("steady", Reply(chunks=4, chunk_delay_s=0.15))
    r, events = stream(client, model="emu/steady", timeout={"call_timeout": 200}, fallbacks=[{"model": "emu2/good"}])
    assert_clean_stream(r, events)
    assert calls(upstream) == ["steady"]


@pytest.mark.parametrize("failure", [Reply(cut_after_chunks=2), Reply(error_event_after_chunks=2)],
                         ids=["cut", "error-event"])
def test_stream_failure_after_the_first_chunk_is_in_band(client, upstream, failure):
    upstream.script("late", failure)
    r, events = stream(client, model="emu/late", retry={"count": 2, "on_codes": [429, 500, 502]},
                       fallbacks=[{"model": "emu2/good"}])
    assert r.status_code == 200
    assert calls(upstream) == ["late"]  # no retry, no fallback once content was relayed
    assert "[DONE]" not in events
    payloads = [json.loads(e) for e in events]
    assert all("choices" in p for p in payloads[:-1]) and len(payloads) >= 2
    assert set(payloads[-1]) == {"error"}
    assert set(payloads[-1]["error"]) == {"message", "type", "param", "code"}
    assert r.headers["x-switchyard-model"] == "emu/late"
