"""Per-key limits and usage (README, "Limits and usage") over real sockets, with real Redis at
127.0.0.1:6379 shared by several proxy processes. The module has its own key namespace, emptied
before each test (every counter lives in Redis), and deletes only its own keys."""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import shared_redis
from tests.emulators.openai_server import OpenAIEmulator, Reply
from tests.proxy_process import ProxyProcess, free_port
from tests.test_ops_metrics import gauge, moved, scrape

URL = "/v2/router/completions"
REDIS = "redis://127.0.0.1:6379/0"
KEYS = {name: f"sk-{name}-0123456789" for name in ("rpm", "tpm", "conc", "cost", "tokens", "free", "glob")}
# 5 prompt + 7 completion tokens per emulated answer: 0.5 + 1.4 = 1.9 per request.
PRICING = '  "emu/*": {input_per_1m: 100000, output_per_1m: 200000}'
LIMITS = """
  default: {requests_per_minute: 100}
  keys:
    rpm: {requests_per_minute: 4, tokens_per_minute: 100000}
    tpm: {requests_per_minute: 1000, tokens_per_minute: 30}
    conc: {concurrent_requests: 1}
    cost: {cost_per_day: 5}
    tokens: {tokens_per_month: 20}
    glob:
      models: {"emu/slow-*": {requests_per_minute: 1}}
"""


@pytest.fixture(scope="module")
def redis_client() -> Iterator[object]:
    client = shared_redis(db=0, timeout=2)
    yield client
    client.close()


def _delete(client, ns: str) -> None:  # type: ignore[no-untyped-def]
    keys = list(client.scan_iter(match=f"{ns}:*", count=500))
    if keys:
        client.delete(*keys)


@pytest.fixture(scope="module")
def shared_namespace(redis_client) -> Iterator[str]:  # type: ignore[no-untyped-def]
    ns = f"switchyard-test-limits-{uuid.uuid4().hex[:12]}"
    yield ns
    _delete(redis_client, ns)


@pytest.fixture()
def namespace(redis_client, shared_namespace: str) -> str:  # type: ignore[no-untyped-def]
    """Every counter lives in Redis: deleting this namespace's keys gives a test fresh limits."""
    _delete(redis_client, shared_namespace)
    return shared_namespace


def config(emulator: OpenAIEmulator, namespace: str, *, redis_url: str = REDIS, extra: str = "",
           limits: str = LIMITS, backend: str = "redis") -> str:
    keys = "\n".join(f'    - {{name: {name}, key: "{secret}"}}' for name, secret in KEYS.items())
    return f"""
server: {{host: 127.0.0.1, port: {{port}}, max_request_seconds: 20, shutdown_grace_seconds: 2}}
logging: {{level: info, format: json}}
auth:
  keys:
{keys}
providers:
  emu: {{type: openai, base_url: "{emulator.base_url}", api_key: "sk-upstream-secret-0123456789"}}
pricing:
{PRICING}
limits:
  backend: {backend}
  redis_url: "{redis_url}"
  namespace: {namespace}
{extra}{limits}"""


def start(emulator: OpenAIEmulator, workdir: Path, namespace: str, **kwargs: str) -> ProxyProcess:
    return ProxyProcess(config(emulator, namespace, **kwargs), workdir).start()


@pytest.fixture(scope="module")
def two_proxies(emulator: OpenAIEmulator, tmp_path_factory: pytest.TempPathFactory,
                shared_namespace: str) -> Iterator[list[ProxyProcess]]:
    workdir = tmp_path_factory.mktemp("limits")
    started = [start(emulator, workdir / f"p{i}", shared_namespace) for i in range(2)]
    yield started
    for process in started:
        process.stop()


@pytest.fixture()
def proxies(upstream: OpenAIEmulator, two_proxies: list[ProxyProcess], namespace: str) -> list[ProxyProcess]:
    return two_proxies


def post(proxy: ProxyProcess, key: str, model: str = "emu/m", **body: object) -> httpx.Response:
    return httpx.post(proxy.url + URL, json={"model": model, "prompt": "hi", **body},
                      headers={"Authorization": f"Bearer {KEYS[key]}"}, timeout=15)


def error(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


def log_events(proxy: ProxyProcess) -> list[dict]:
    events = [json.loads(line) for line in proxy.log().splitlines() if line.startswith("{")]
    return [e for e in events if e.get("event") == "request"]


def request_events(proxies: list[ProxyProcess], ids: set[str], timeout: float = 3.0) -> list[dict]:
    """The request log events of `ids`, waiting for them: the proxy writes its log in batches
    up to 0.1 s apart, so an event may not be in the file yet when its answer is."""
    deadline = time.monotonic() + timeout
    while True:
        found = [e for p in proxies for e in log_events(p) if e["request_id"] in ids]
        if len(found) >= len(ids) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


# -- two instances, one limit ------------------------------------------------------------------------------

def test_two_proxies_enforce_one_global_requests_per_minute(proxies: list[ProxyProcess]) -> None:
    a, b = proxies
    statuses = [post(p, "rpm").status_code for p in (a, b, a, b)]
    assert statuses == [200, 200, 200, 200]
    for p in (a, b):  # both refuse the fifth: the counter is shared, not per process
        refused = post(p, "rpm")
        assert refused.status_code == 429
        err = error(refused)
        assert err["code"] == "rate_limit_exceeded" and err["param"] == "requests_per_minute"
        assert err["type"] == "rate_limit_error"
        assert 1 <= int(refused.headers["retry-after"]) <= 120
        assert refused.headers["x-ratelimit-limit-requests"] == "4"
        assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert post(a, "free").status_code == 200  # another key is not affected


def test_requests_and_tokens_limits_trip_independently(proxies: list[ProxyProcess]) -> None:
    a, b = proxies
    # tpm: 30 tokens and 12 per answer: three answers fit (0, 12, 24 used before each), the fourth
    # request waits — while its requests-per-minute counter is far from full.
    assert [post(p, "tpm").status_code for p in (a, b, a)] == [200, 200, 200]
    refused = post(b, "tpm")
    assert refused.status_code == 429 and error(refused)["param"] == "tokens_per_minute"
    assert refused.headers["x-ratelimit-remaining-tokens"] == "0"
    assert refused.headers["x-ratelimit-limit-tokens"] == "30"
    assert refused.headers["x-ratelimit-remaining-requests"] == "997"  # three counted, the refusal is not
    # rpm: 4 requests and plenty of tokens; its fifth is refused by requests, not tokens.
    assert [post(p, "rpm").status_code for p in (a, b, a, b)] == [200] * 4
    refused = post(a, "rpm")
    assert error(refused)["param"] == "requests_per_minute"
    assert refused.headers["x-ratelimit-remaining-tokens"] == str(100000 - 4 * 12)


def test_headers_on_every_answer_of_a_limited_key(upstream: OpenAIEmulator, proxies: list[ProxyProcess]) -> None:
    a, b = proxies
    broken = f"broken-{uuid.uuid4().hex[:6]}"
    upstream.script(broken, Reply(status=500))
    first, second = post(a, "rpm"), post(b, "rpm")
    assert first.headers["x-ratelimit-limit-requests"] == "4"
    assert first.headers["x-ratelimit-remaining-requests"] == "3"
    assert second.headers["x-ratelimit-remaining-requests"] == "2"
    assert first.headers["x-ratelimit-limit-tokens"] == "100000"
    assert first.headers["x-ratelimit-remaining-tokens"] == "100000"
    assert second.headers["x-ratelimit-remaining-tokens"] == str(100000 - 12)  # the first's usage
    # Until the window holds nothing: the rest of this minute and the whole next one.
    reset = second.headers["x-ratelimit-reset-requests"]
    assert reset.startswith(("1m", "2m0s")), reset
    # An upstream error is an answer of a limited key too.
    upstream_error = post(a, "rpm", model=f"emu/{broken}")
    assert upstream_error.status_code >= 500
    # the default limit applies to a key with no entry of its own
    free = post(a, "free")
    assert free.headers["x-ratelimit-limit-requests"] == "100"
    assert free.headers["x-ratelimit-remaining-requests"] == "99"
    assert "x-ratelimit-limit-tokens" not in free.headers
    assert upstream_error.headers["x-ratelimit-remaining-requests"] == "1"


def test_a_model_glob_has_its_own_counter(proxies: list[ProxyProcess]) -> None:
    a, b = proxies
    assert post(a, "glob", model="emu/slow-1").status_code == 200
    refused = post(b, "glob", model="emu/slow-2")
    assert refused.status_code == 429
    assert error(refused)["param"] == "models[emu/slow-*].requests_per_minute"
    assert post(b, "glob", model="emu/fast").status_code == 200  # outside the glob: the key's default only


# -- concurrency slots ---------------------------------------------------------------------------------------

def _hold(proxy: ProxyProcess, key: str, model: str, out: list[int]) -> None:
    out.append(post(proxy, key, model=model).status_code)


def test_concurrency_slots_are_released_on_every_path(upstream: OpenAIEmulator, proxies: list[ProxyProcess]) -> None:
    a, b = proxies
    slow, broken, stalled = (f"emu/{n}-{uuid.uuid4().hex[:6]}" for n in ("slow", "broken", "stalled"))
    upstream.script(slow.split("/")[1], Reply(delay_s=0.6))
    upstream.script(broken.split("/")[1], Reply(status=500))
    upstream.script(stalled.split("/")[1], Reply(delay_s=5))
    for _ in range(3):
        # held: a second request, on the other instance, is refused while the first runs
        results: list[int] = []
        holder = threading.Thread(target=_hold, args=(a, "conc", slow, results))
        holder.start()
        time.sleep(0.3)
        refused = post(b, "conc")
        assert refused.status_code == 429 and error(refused)["param"] == "concurrent_requests"
        holder.join()
        assert results == [200]
        # an upstream error, a timeout, a client that leaves, a stream: each frees the slot
        assert post(b, "conc", model=broken).status_code >= 500
        assert post(a, "conc").status_code == 200
        timed_out = post(a, "conc", model=stalled, timeout={"call_timeout": 200})
        assert timed_out.status_code in (408, 504), timed_out.text
        assert post(b, "conc").status_code == 200
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(b.url + URL, json={"model": stalled, "prompt": "hi"},
                       headers={"Authorization": f"Bearer {KEYS['conc']}"}, timeout=0.4)
        assert _eventually_ok(a, "conc")
        with httpx.stream("POST", a.url + URL, json={"model": "emu/m", "prompt": "hi", "stream": True},
                          headers={"Authorization": f"Bearer {KEYS['conc']}"}, timeout=10) as stream:
            assert stream.status_code == 200
            stream.read()
        assert post(b, "conc").status_code == 200


def _eventually_ok(proxy: ProxyProcess, key: str, within: float = 2.0) -> bool:
    """A client's disconnect reaches the proxy a moment after the client gives up."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if post(proxy, key).status_code == 200:
            return True
        time.sleep(0.05)
    return False


def test_a_crashed_instance_cannot_hold_a_slot(upstream: OpenAIEmulator, tmp_path: Path, namespace: str) -> None:
    stalled = f"emu/stalled-{uuid.uuid4().hex[:6]}"
    upstream.script(stalled.split("/")[1], Reply(delay_s=10))
    extra = "  slot_ttl_seconds: 1.5\n"
    doomed, survivor = (start(upstream, tmp_path / n, namespace, extra=extra) for n in ("doomed", "survivor"))
    try:
        results: list[int] = []
        hold = threading.Thread(target=_hold_quietly, args=(doomed, stalled, results))
        hold.start()
        time.sleep(0.4)
        assert post(survivor, "conc").status_code == 429
        assert doomed.process is not None
        doomed.process.send_signal(signal.SIGKILL)  # no finally runs: only the expiry frees the slot
        hold.join()
        assert _eventually_ok(survivor, "conc", within=4.0)
    finally:
        doomed.stop()
        survivor.stop()


def test_a_drained_instance_releases_its_slots(upstream: OpenAIEmulator, two_proxies: list[ProxyProcess],
                                              tmp_path: Path, namespace: str) -> None:
    stalled = f"emu/stalled-{uuid.uuid4().hex[:6]}"
    upstream.script(stalled.split("/")[1], Reply(delay_s=10))
    draining = start(upstream, tmp_path, namespace)  # shutdown_grace_seconds: 2, slots live 50 s
    try:
        results: list[int] = []
        hold = threading.Thread(target=_hold_quietly, args=(draining, stalled, results))
        hold.start()
        time.sleep(0.4)
        assert post(two_proxies[0], "conc").status_code == 429
        draining.signal(signal.SIGTERM)  # the grace runs out, the request is cancelled: its finally runs
        hold.join()
        assert results == [503]
        assert post(two_proxies[0], "conc").status_code == 200  # long before the slot would expire
    finally:
        draining.stop()


def _hold_quietly(proxy: ProxyProcess, model: str, out: list[int]) -> None:
    try:
        out.append(post(proxy, "conc", model=model).status_code)
    except httpx.HTTPError:
        out.append(-1)


# -- the store unreachable -----------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["fail_open", "fail_closed"])
def test_an_unreachable_redis_is_the_configured_choice_and_says_so(upstream: OpenAIEmulator, tmp_path: Path,
                                                                   mode: str) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    proxy = start(upstream, tmp_path, "unused", redis_url=closed, extra=f"  on_redis_error: {mode}\n")
    try:
        answers = [post(proxy, "rpm") for _ in range(6)]  # more than the key's 4 per minute
        if mode == "fail_open":
            assert [r.status_code for r in answers] == [200] * 6
            assert "x-ratelimit-limit-requests" not in answers[0].headers  # nothing was counted
        else:
            assert [r.status_code for r in answers] == [503] * 6
            assert error(answers[0])["code"] == "rate_limiter_unavailable"
            assert answers[0].headers["retry-after"] == "1"
        assert post(proxy, "cost", model="emu/m").status_code == (200 if mode == "fail_open" else 503)
        samples = scrape(proxy)
        assert gauge(samples, "switchyard_limiter_degraded") == 1
        counted = moved({}, samples, "switchyard_limiter_unavailable_total", ("mode",))
        assert counted == {(mode,): 7}
        lines = [line for line in proxy.log().splitlines() if "rate limiter store unreachable" in line]
        assert len(lines) == 1, lines  # said once, not once per request
        assert mode in lines[0]
    finally:
        proxy.stop()


# -- budgets and accounting ------------------------------------------------------------------------------------

def test_budgets_stop_a_key_at_its_spend(proxies: list[ProxyProcess]) -> None:
    a, b = proxies
    # cost_per_day 5 at 1.9 a request: admitted at 0, 1.9, 3.8 spent; refused at 5.7.
    answers = [post(p, "cost") for p in (a, b, a)]
    assert [r.status_code for r in answers] == [200, 200, 200]
    refused = post(b, "cost")
    assert refused.status_code == 429 and error(refused)["param"] == "cost_per_day"
    assert int(refused.headers["retry-after"]) <= 86_400  # at the next UTC midnight
    ids = {r.headers["x-request-id"] for r in answers}
    # tokens_per_month 20 at 12 a request: admitted at 0 and 12, refused at 24.
    assert [post(p, "tokens").status_code for p in (a, b)] == [200, 200]
    refused = post(a, "tokens")
    assert error(refused)["param"] == "tokens_per_month"
    assert int(refused.headers["retry-after"]) <= 31 * 86_400
    costs = [e.get("cost") for e in request_events([a, b], ids)]
    assert sorted(costs) == [1.9, 1.9, 1.9]
    samples = scrape(b)
    remaining = {dict(labels)["budget"]: v for (n, labels), v in samples.items()
                 if n == "switchyard_key_budget_remaining" and dict(labels)["key"] in ("cost", "tokens")}
    assert remaining == {"cost_per_day": 0.0, "tokens_per_month": 0.0}


def test_per_key_metrics_add_up_to_a_scripted_run(upstream: OpenAIEmulator, proxies: list[ProxyProcess]) -> None:
    a, b = proxies
    broken = f"emu/broken-{uuid.uuid4().hex[:6]}"
    upstream.script(broken.split("/")[1], Reply(status=500))
    before = [scrape(p) for p in proxies]
    statuses = [post(a, "rpm").status_code, post(b, "rpm").status_code, post(a, "rpm", model=broken).status_code]
    with httpx.stream("POST", b.url + URL, json={"model": "emu/m", "prompt": "hi", "stream": True,
                                                 "stream_options": {"include_usage": True}},
                      headers={"Authorization": f"Bearer {KEYS['rpm']}"}, timeout=10) as stream:
        assert stream.status_code == 200
        stream.read()
    statuses += [200, post(a, "rpm").status_code, post(b, "cost").status_code]
    assert statuses[:2] == [200, 200] and statuses[2] >= 500 and statuses[4:] == [429, 200]
    after = [scrape(p) for p in proxies]

    def total(name: str, by: tuple[str, ...]) -> dict[tuple[str, ...], float]:
        out: dict[tuple[str, ...], float] = {}
        for old, new in zip(before, after, strict=True):
            for k, v in moved(old, new, name, by).items():
                out[k] = out.get(k, 0) + v
        return out

    assert total("switchyard_key_requests_total", ("key", "status")) == {
        ("rpm", "200"): 3, ("rpm", str(statuses[2])): 1, ("rpm", "429"): 1, ("cost", "200"): 1}
    assert total("switchyard_key_tokens_total", ("key", "type")) == {
        ("rpm", "prompt"): 15, ("rpm", "completion"): 21, ("cost", "prompt"): 5, ("cost", "completion"): 7}
    cost = total("switchyard_key_cost_total", ("key",))
    assert cost.keys() == {("rpm",), ("cost",)}
    assert cost[("rpm",)] == pytest.approx(3 * 1.9) and cost[("cost",)] == pytest.approx(1.9)
    assert total("switchyard_rate_limited_total", ("key", "limit")) == {("rpm", "requests_per_minute"): 1}


def test_the_memory_backend_limits_one_instance(upstream: OpenAIEmulator, tmp_path: Path) -> None:
    proxy = start(upstream, tmp_path, "memory", backend="memory")
    try:
        answers = [post(proxy, "rpm") for _ in range(5)]
        assert [r.status_code for r in answers] == [200, 200, 200, 200, 429]
        assert [r.headers["x-ratelimit-remaining-requests"] for r in answers] == ["3", "2", "1", "0", "0"]
        assert answers[1].headers["x-ratelimit-remaining-tokens"] == str(100000 - 12)
        assert error(answers[4])["param"] == "requests_per_minute"
    finally:
        proxy.stop()
