"""Circuit breakers over real sockets (README, "Circuit breakers"): a breaker opens after the
configured failures, then the failing upstream is skipped without being touched (its emulator
sees no request), half-open lets only the configured probes through, a success closes it, a
failure reopens it; every candidate open is a 503 within milliseconds; two proxy processes share
one breaker through Redis (real Redis at 127.0.0.1:6379, the test's own namespace).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import KEY_A, shared_redis, start_proxy
from tests.emulators.openai_server import OpenAIEmulator, Reply
from tests.proxy_process import ProxyProcess
from tests.test_circuit_store import REDIS_URL

URL = "/v2/router/completions"
COOLDOWN = 1.0
BREAKERS = f"""
breakers: {{consecutive_failures: 3, failure_ratio: null, cooldown_seconds: {COOLDOWN}, half_open_probes: 1}}
groups:
  pair:
    targets: [{{model: emu/g-bad}}, {{model: emu/g-good}}]
  probed:
    targets: [{{model: emu/h-bad}}, {{model: emu/h-good}}]
"""


@pytest.fixture(scope="module")
def guarded(emulator: OpenAIEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    process = start_proxy(emulator, tmp_path_factory.mktemp("breakers"), BREAKERS)
    yield process
    process.stop()


@pytest.fixture()
def client(guarded: ProxyProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=guarded.url, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30) as c:
        yield c


def calls(upstream: OpenAIEmulator, model: str | None = None) -> list[str | None]:
    return [r.model for r in upstream.requests
            if r.path == "/v1/completions" and (model is None or r.model == model)]


def post(client: httpx.Client, **body: object) -> httpx.Response:
    body.setdefault("prompt", "hi")
    return client.post(URL, json=body)


def trip(client: httpx.Client, upstream: OpenAIEmulator, model: str) -> None:
    """Three failures in a row: the configured count."""
    upstream.script(model, Reply(status=503))
    for _ in range(3):
        assert post(client, model=f"emu/{model}").status_code == 503
    assert calls(upstream, model) == [model] * 3


def test_opens_after_the_configured_failures_and_answers_503_at_once(client, upstream):
    trip(client, upstream, "br-a")
    started = time.monotonic()
    r = post(client, model="emu/br-a")
    elapsed = time.monotonic() - started
    assert r.status_code == 503
    error = r.json()["error"]
    assert error["code"] == "circuit_open"
    assert "emu/br-a" in error["message"]
    assert int(r.headers["retry-after"]) >= 1
    assert calls(upstream, "br-a") == ["br-a"] * 3  # not touched
    assert elapsed < 0.1, elapsed


def test_an_open_candidate_is_skipped_for_the_fallback(client, upstream):
    trip(client, upstream, "br-b")
    r = post(client, model="emu/br-b", fallbacks=[{"model": "emu/br-b-fb"}])
    assert r.status_code == 200, r.text
    assert r.headers["x-switchyard-model"] == "emu/br-b-fb"
    assert r.headers["x-switchyard-attempts"] == "1"
    assert calls(upstream) == ["br-b"] * 3 + ["br-b-fb"]


def test_every_candidate_open_is_503_naming_each(client, upstream):
    trip(client, upstream, "br-c1")
    trip(client, upstream, "br-c2")
    started = time.monotonic()
    r = post(client, model="emu/br-c1", fallbacks=[{"model": "emu/br-c2"}])
    assert time.monotonic() - started < 0.1
    assert r.status_code == 503
    message = r.json()["error"]["message"]
    assert "emu/br-c1" in message and "emu/br-c2" in message
    assert len(calls(upstream)) == 6


def test_a_group_draws_among_its_healthy_members(client, upstream):
    trip(client, upstream, "g-bad")
    for _ in range(12):
        r = post(client, model="pair")
        assert r.status_code == 200, r.text
    assert calls(upstream, "g-bad") == ["g-bad"] * 3  # none of the 12
    assert len(calls(upstream, "g-good")) == 12


def test_client_errors_do_not_count(client, upstream):
    upstream.script("br-4xx", Reply(status=400))
    for _ in range(5):
        assert post(client, model="emu/br-4xx").status_code == 400
    assert len(calls(upstream, "br-4xx")) == 5


def test_timeouts_count(client, upstream):
    upstream.script("br-slow", Reply(delay_s=1.0))
    for _ in range(3):
        assert post(client, model="emu/br-slow", timeout={"call_timeout": 100}).status_code == 408
    r = post(client, model="emu/br-slow", timeout={"call_timeout": 100})
    assert r.status_code == 503 and r.json()["error"]["code"] == "circuit_open"
    assert len(calls(upstream, "br-slow")) == 3


def _concurrently(url: str, body: dict, n: int) -> list[httpx.Response]:
    def one(_: int) -> httpx.Response:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30) as c:
            return c.post(URL, json={"prompt": "hi", **body})

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_half_open_lets_one_probe_through_then_closes(guarded, client, upstream):
    trip(client, upstream, "br-h")
    time.sleep(COOLDOWN + 0.1)
    upstream.script("br-h", Reply(delay_s=1.0))  # healthy again, and slow enough to overlap
    responses = _concurrently(guarded.url, {"model": "emu/br-h", "fallbacks": [{"model": "emu/br-h-fb"}]}, 6)
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    served = sorted(r.headers["x-switchyard-model"] for r in responses)
    assert served == ["emu/br-h"] + ["emu/br-h-fb"] * 5  # one probe, never every waiting request
    assert len(calls(upstream, "br-h")) == 4
    upstream.script("br-h", Reply())
    for _ in range(3):  # the probe's success closed it
        assert post(client, model="emu/br-h").status_code == 200
    assert len(calls(upstream, "br-h")) == 7


def test_while_one_member_is_probed_the_group_serves_from_the_others(guarded, client, upstream):
    trip(client, upstream, "h-bad")
    time.sleep(COOLDOWN + 0.1)
    upstream.script("h-bad", Reply(delay_s=1.0))
    responses = _concurrently(guarded.url, {"model": "probed"}, 6)  # no fallbacks: only the group
    assert [r.status_code for r in responses] == [200] * 6, [r.text for r in responses]
    assert len(calls(upstream, "h-bad")) <= 4  # the three that tripped it, and at most one probe
    assert len(calls(upstream, "h-good")) >= 5


def test_a_stream_skips_an_open_circuit_before_its_first_byte(guarded, client, upstream):
    trip(client, upstream, "br-s")
    with client.stream("POST", URL, json={"model": "emu/br-s", "prompt": "hi", "stream": True,
                                          "fallbacks": [{"model": "emu/br-s-fb"}]}) as r:
        body = r.read().decode()
    assert r.status_code == 200
    assert r.headers["x-switchyard-model"] == "emu/br-s-fb"
    assert body.endswith("data: [DONE]\n\n")
    assert calls(upstream, "br-s") == ["br-s"] * 3
    time.sleep(0.2)  # the log event is written once the response is done
    logged = [json.loads(line) for line in guarded.log().splitlines() if "circuit_open\"" in line]
    assert any(event.get("circuit_open") == ["emu/br-s"] for event in logged), logged


def test_a_failed_probe_reopens(client, upstream):
    trip(client, upstream, "br-r")
    time.sleep(COOLDOWN + 0.1)
    assert post(client, model="emu/br-r").status_code == 503  # the probe, still failing
    assert len(calls(upstream, "br-r")) == 4
    r = post(client, model="emu/br-r")
    assert r.json()["error"]["code"] == "circuit_open"
    assert len(calls(upstream, "br-r")) == 4


def test_the_attempt_that_opens_the_circuit_is_not_retried(client, upstream):
    upstream.script("br-t", Reply(status=429))
    r = post(client, model="emu/br-t", retry={"count": 5, "on_codes": [429]})
    assert r.status_code == 429
    assert calls(upstream, "br-t") == ["br-t"] * 3  # the third failure opened it: no retries 4 to 6


def test_metrics_show_state_and_transitions(guarded, client, upstream):
    trip(client, upstream, "br-m")
    text = httpx.get(f"{guarded.url}/metrics", timeout=5).text
    assert 'switchyard_circuit_state{model="br-m",provider="emu"} 2.0' in text
    assert 'switchyard_circuit_transitions_total{model="br-m",provider="emu",to="open"} 1.0' in text


# -- shared through Redis ------------------------------------------------------------------------------

@pytest.fixture()
def namespace() -> Iterator[str]:
    sync = shared_redis(db=0)
    name = f"sy-test-{uuid.uuid4().hex[:12]}"
    yield name
    keys = list(sync.scan_iter(f"{name}:*"))
    if keys:
        sync.delete(*keys)
    sync.close()


def test_two_proxies_share_one_breaker_through_redis(emulator, upstream, tmp_path, namespace):
    extra = f"""
breakers:
  consecutive_failures: 3
  failure_ratio: null
  cooldown_seconds: 30
  redis: {{url: "{REDIS_URL}", namespace: {namespace}}}
"""
    first = start_proxy(emulator, tmp_path / "one", extra)
    second = start_proxy(emulator, tmp_path / "two", extra)
    try:
        with httpx.Client(base_url=first.url, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=10) as a, \
             httpx.Client(base_url=second.url, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=10) as b:
            trip(a, upstream, "shared")  # failures seen by the first instance only
            r = post(b, model="emu/shared", fallbacks=[{"model": "emu/shared-fb"}])
            assert r.status_code == 200, r.text
            assert r.headers["x-switchyard-model"] == "emu/shared-fb"
            assert calls(upstream, "shared") == ["shared"] * 3  # the second never touched it
            assert post(b, model="emu/shared").json()["error"]["code"] == "circuit_open"
    finally:
        first.stop()
        second.stop()
