"""The exact-match cache over real sockets (DESIGN.md "Cache"), with the bounded memory backend
(the session proxy) and real Redis at 127.0.0.1:6379, db 15. Other programs may use that Redis and
that db: these tests write only keys under a prefix unique to the run (`switchyard-test-<random>:`,
the config's `cache.namespace`) and delete only those keys at the end; nothing is flushed.

Stores run in the background after the answer is sent; with Redis a test waits until the entry
is in Redis before it asks again, so it checks what is stored rather than a race.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import KEY_A, KEY_C, shared_redis, start_proxy
from tests.emulators.openai_server import OpenAIEmulator, Reply
from tests.proxy_process import ProxyProcess

URL = "/v2/router/completions"
REDIS_URL = "redis://127.0.0.1:6379/15"
NAMESPACE = f"switchyard-test-{uuid.uuid4().hex}:"  # every key this run writes, and only those
REDIS_CACHE = f'cache: {{backend: redis, url: "{REDIS_URL}", namespace: "{NAMESPACE}"}}'
CACHE = {"type": "exact_match", "ttl": 60}


def calls(upstream: OpenAIEmulator) -> list[str | None]:
    return [r.model for r in upstream.requests if r.path == "/v1/completions"]


def unique() -> str:
    return f"cache test {uuid.uuid4().hex}"


def sse_events(text: str) -> list[str]:
    events = []
    for block in text.split("\n\n"):
        if block:
            assert block.startswith("data: "), repr(block)
            events.append(block[len("data: "):])
    return events


def stream_text(events: list[str]) -> str:
    assert events[-1] == "[DONE]", events
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks and all("error" not in c for c in chunks), chunks
    for chunk in chunks:
        assert chunk["object"] == "text_completion"
        assert all(choice["finish_reason"] in ("stop", "length", "content_filter", "tool_calls")
                   for choice in chunk["choices"])
    assert chunks[-1]["usage"] is not None
    return "".join(choice["text"] for c in chunks for choice in c["choices"])


# -- backends ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def redis_db() -> Iterator[object]:
    client = shared_redis(db=15)
    yield client
    delete_ours(client)
    client.close()


def delete_ours(client: Any) -> int:
    ours = list(client.scan_iter(match=f"{NAMESPACE}*", count=1000))
    return client.delete(*ours) if ours else 0


def test_cleanup_deletes_only_this_runs_keys(redis_db: Any) -> None:
    """Others' keys in the shared db survive (the suite used to flush db 15 at start and end)."""
    theirs = f"someone-else-{uuid.uuid4().hex}"
    redis_db.set(theirs, b"keep me", ex=60)
    redis_db.set(f"{NAMESPACE}probe", b"ours", ex=60)
    try:
        assert delete_ours(redis_db) >= 1
        assert redis_db.get(theirs) == b"keep me"
        assert not list(redis_db.scan_iter(match=f"{NAMESPACE}*"))
    finally:
        redis_db.delete(theirs)


@pytest.fixture(scope="module")
def redis_proxy(emulator, redis_db, tmp_path_factory) -> Iterator[ProxyProcess]:
    process = start_proxy(emulator, tmp_path_factory.mktemp("redis-1"), REDIS_CACHE)
    yield process
    process.stop()


@dataclass
class Backend:
    name: str
    proxy: ProxyProcess
    redis: object | None  # redis.Redis when the backend is Redis

    def client(self, key: str = KEY_A) -> httpx.Client:
        return httpx.Client(base_url=self.proxy.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)

    def entries(self) -> set[bytes]:
        """The keys in Redis (entries of earlier tests may expire meanwhile: compare names, not counts)."""
        if self.redis is None:
            return set()
        return set(self.redis.scan_iter(match=f"{NAMESPACE}*", count=1000))  # type: ignore[attr-defined]

    def wait_stored(self, before: set[bytes]) -> None:
        """With Redis: until an entry not in `before` is there (stores are background tasks)."""
        if self.redis is None:
            return
        deadline = time.monotonic() + 3
        while not self.entries() - before:
            assert time.monotonic() < deadline, "the cache entry never reached Redis"
            time.sleep(0.01)

    def new_entries(self, before: set[bytes]) -> set[bytes]:
        return self.entries() - before

    def settle(self) -> None:
        """Give a store that should not happen the time to happen."""
        time.sleep(0.2 if self.redis is not None else 0.05)


@pytest.fixture(params=["memory", "redis"])
def backend(request) -> Backend:
    if request.param == "memory":
        return Backend("memory", request.getfixturevalue("proxy"), None)
    return Backend("redis", request.getfixturevalue("redis_proxy"), request.getfixturevalue("redis_db"))


def post(client: httpx.Client, **body: object) -> httpx.Response:
    body.setdefault("model", "emu/cached")
    body.setdefault("cache", CACHE)
    return client.post(URL, json=body)


def post_stream(client: httpx.Client, **body: object) -> tuple[httpx.Response, list[str]]:
    body.setdefault("model", "emu/cached")
    body.setdefault("cache", CACHE)
    with client.stream("POST", URL, json={**body, "stream": True}) as response:
        text = response.read().decode()
    return response, sse_events(text)


# -- hits and misses ------------------------------------------------------------------------------------

def test_second_identical_request_is_served_from_the_cache(backend, upstream):
    prompt = unique()
    with backend.client() as c:
        before = backend.entries()
        first = post(c, prompt=prompt, max_tokens=8)
        assert first.status_code == 200, first.text
        assert first.headers["x-switchyard-cache"] == "miss"
        backend.wait_stored(before)
        second = post(c, prompt=prompt, max_tokens=8)
    assert second.status_code == 200, second.text
    assert second.headers["x-switchyard-cache"] == "hit"
    assert calls(upstream) == ["cached"]
    assert second.json() == first.json()
    assert second.content == first.content
    assert second.headers["x-switchyard-model"] == "emu/cached"


def test_a_request_without_a_cache_object_never_uses_the_cache(backend, upstream):
    prompt = unique()
    with backend.client() as c:
        before = backend.entries()
        assert post(c, prompt=prompt).headers["x-switchyard-cache"] == "miss"
        backend.wait_stored(before)
        r = c.post(URL, json={"model": "emu/cached", "prompt": prompt})
    assert r.status_code == 200
    assert "x-switchyard-cache" not in r.headers
    assert calls(upstream) == ["cached", "cached"]


def test_entries_expire_after_their_ttl(backend, upstream):
    prompt = unique()
    ttl = {"type": "exact_match", "ttl": 1}
    with backend.client() as c:
        before = backend.entries()
        assert post(c, prompt=prompt, cache=ttl).headers["x-switchyard-cache"] == "miss"
        backend.wait_stored(before)
        assert post(c, prompt=prompt, cache=ttl).headers["x-switchyard-cache"] == "hit"
        time.sleep(1.2)
        again = post(c, prompt=prompt, cache=ttl)
    assert again.status_code == 200
    assert again.headers["x-switchyard-cache"] == "miss"
    assert calls(upstream) == ["cached", "cached"]


def test_another_tenant_never_gets_the_answer(backend, upstream):
    prompt = unique()
    upstream.script("tenant", Reply(text="answer for team-a"), Reply(text="answer for team-c"))
    with backend.client(KEY_A) as a, backend.client(KEY_C) as c:
        before = backend.entries()
        first = post(a, model="emu/tenant", prompt=prompt)
        assert first.headers["x-switchyard-cache"] == "miss"
        backend.wait_stored(before)
        stored_a = backend.entries()
        other = post(c, model="emu/tenant", prompt=prompt)
        assert other.status_code == 200, other.text
        assert other.headers["x-switchyard-cache"] == "miss"
        assert other.json()["choices"][0]["text"] == "answer for team-c"
        backend.wait_stored(stored_a)
        # each tenant then hits its own entry
        assert post(a, model="emu/tenant", prompt=prompt).json()["choices"][0]["text"] == "answer for team-a"
        assert post(c, model="emu/tenant", prompt=prompt).json()["choices"][0]["text"] == "answer for team-c"
    assert calls(upstream) == ["tenant", "tenant"]


@pytest.mark.parametrize("change", [{"temperature": 0.2}, {"prompt": "a different prompt"}, {"model": "emu/other"},
                                    {"max_tokens": 3}], ids=["temperature", "prompt", "model", "max_tokens"])
def test_a_different_parameter_or_prompt_is_a_miss(backend, upstream, change):
    base = {"model": "emu/cached", "prompt": unique(), "temperature": 0.7}
    changed = {**base, **change}
    if "prompt" in change:
        changed["prompt"] = change["prompt"] + " " + base["prompt"]
    with backend.client() as c:
        before = backend.entries()
        assert post(c, **base).headers["x-switchyard-cache"] == "miss"
        backend.wait_stored(before)
        r = post(c, **changed)
    assert r.status_code == 200
    assert r.headers["x-switchyard-cache"] == "miss"
    assert len(calls(upstream)) == 2


@pytest.mark.parametrize("extra", [
    {"user": "end-user-7"},
    {"name": "a trace"},
    {"retry": {"count": 2, "on_codes": [429, 503]}},
    {"timeout": {"call_timeout": 30000}},
    {"orq": {"identity": {"id": "identity-1", "display_name": "Ann"}}},
    {"orq": {"contact": {"id": "contact-1"}}},
    {"orq": {"thread": {"id": "thread-1", "tags": ["x"]}}},
    {"orq": {"name": "orq trace"}},
    {"max_tokens": 16},  # the spec's default, sent explicitly
], ids=["user", "name", "retry", "timeout", "orq.identity", "orq.contact", "orq.thread", "orq.name", "max_tokens-16"])
def test_fields_that_do_not_change_the_answer_keep_the_hit(proxy, upstream, extra):
    prompt = unique()
    with httpx.Client(base_url=proxy.url, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30) as c:
        assert post(c, prompt=prompt).headers["x-switchyard-cache"] == "miss"
        r = post(c, prompt=prompt, **extra)
    assert r.status_code == 200, r.text
    assert r.headers["x-switchyard-cache"] == "hit"
    assert calls(upstream) == ["cached"]


def test_explicit_default_temperature_keeps_the_hit(proxy, upstream):
    prompt = unique()
    with httpx.Client(base_url=proxy.url, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30) as c:
        assert post(c, prompt=prompt).headers["x-switchyard-cache"] == "miss"
        r = post(c, prompt=prompt, temperature=1)
    assert r.headers["x-switchyard-cache"] == "hit"
    assert calls(upstream) == ["cached"]


# -- streams --------------------------------------------------------------------------------------------

def test_a_stream_miss_is_stored_and_replayed_as_sse_and_as_json(backend, upstream):
    prompt = unique()
    with backend.client() as c:
        before = backend.entries()
        first, events = post_stream(c, prompt=prompt)
        assert first.status_code == 200
        assert first.headers["x-switchyard-cache"] == "miss"
        assert stream_text(events) == "Hello from the emulator"
        backend.wait_stored(before)
        replay, replayed = post_stream(c, prompt=prompt)
        as_json = post(c, prompt=prompt)
    assert replay.status_code == 200
    assert replay.headers["content-type"].startswith("text/event-stream")
    assert replay.headers["x-switchyard-cache"] == "hit"
    assert replay.headers["x-switchyard-model"] == "emu/cached"
    assert stream_text(replayed) == "Hello from the emulator"
    assert as_json.status_code == 200
    assert as_json.headers["x-switchyard-cache"] == "hit"
    body = as_json.json()
    assert body["choices"][0]["text"] == "Hello from the emulator"
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
    assert calls(upstream) == ["cached"]


def test_a_json_miss_is_replayed_as_a_stream(backend, upstream):
    prompt = unique()
    with backend.client() as c:
        before = backend.entries()
        first = post(c, prompt=prompt, n=2)
        assert first.headers["x-switchyard-cache"] == "miss"
        backend.wait_stored(before)
        replay, events = post_stream(c, prompt=prompt, n=2)
    assert replay.headers["x-switchyard-cache"] == "hit"
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    texts = {ch["index"]: ch["text"] for c in chunks for ch in c["choices"]}
    assert texts == {0: "Hello from the emulator", 1: "Hello from the emulator"}
    assert chunks[-1]["usage"]["total_tokens"] == 12
    assert calls(upstream) == ["cached"]


# -- what is never stored -------------------------------------------------------------------------------

def test_a_failed_response_is_never_stored(backend, upstream):
    prompt = unique()
    upstream.script("flaky", Reply(status=500), Reply())
    with backend.client() as c:
        before = backend.entries()
        failed = post(c, model="emu/flaky", prompt=prompt)
        assert failed.status_code == 500
        backend.settle()
        assert not backend.new_entries(before)
        ok = post(c, model="emu/flaky", prompt=prompt)
        assert ok.status_code == 200
        assert ok.headers["x-switchyard-cache"] == "miss"
        backend.wait_stored(before)
        assert post(c, model="emu/flaky", prompt=prompt).headers["x-switchyard-cache"] == "hit"
    assert calls(upstream) == ["flaky", "flaky"]


def test_a_cut_stream_is_never_stored(backend, upstream):
    prompt = unique()
    upstream.script("cut", Reply(cut_after_chunks=2), Reply())
    with backend.client() as c:
        before = backend.entries()
        cut, events = post_stream(c, model="emu/cut", prompt=prompt)
        assert cut.status_code == 200
        assert "[DONE]" not in events and "error" in json.loads(events[-1])
        backend.settle()
        assert not backend.new_entries(before)
        again, events = post_stream(c, model="emu/cut", prompt=prompt)
        assert again.headers["x-switchyard-cache"] == "miss"
        assert stream_text(events) == "Hello from the emulator"
    assert calls(upstream) == ["cut", "cut"]


def test_a_stream_with_an_error_event_is_never_stored(proxy, upstream):
    prompt = unique()
    upstream.script("errev", Reply(error_event_after_chunks=2), Reply())
    with httpx.Client(base_url=proxy.url, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30) as c:
        _, events = post_stream(c, model="emu/errev", prompt=prompt)
        assert "[DONE]" not in events
        time.sleep(0.05)
        again = post(c, model="emu/errev", prompt=prompt)
    assert again.headers["x-switchyard-cache"] == "miss"
    assert calls(upstream) == ["errev", "errev"]


# -- Redis: shared, and never in the way ----------------------------------------------------------------

@pytest.fixture(scope="module")
def redis_proxy_2(emulator, redis_db, tmp_path_factory) -> Iterator[ProxyProcess]:
    process = start_proxy(emulator, tmp_path_factory.mktemp("redis-2"), REDIS_CACHE)
    yield process
    process.stop()


def test_two_instances_share_hits_through_redis(redis_proxy, redis_proxy_2, redis_db, upstream):
    one = Backend("redis", redis_proxy, redis_db)
    two = Backend("redis", redis_proxy_2, redis_db)
    prompt = unique()
    with one.client() as c1, two.client() as c2:
        before = one.entries()
        first = post(c1, prompt=prompt)
        assert first.headers["x-switchyard-cache"] == "miss"
        one.wait_stored(before)
        second = post(c2, prompt=prompt)
        streamed, events = post_stream(c2, prompt=prompt)
    assert second.headers["x-switchyard-cache"] == "hit"
    assert second.json() == first.json()
    assert streamed.headers["x-switchyard-cache"] == "hit"
    assert stream_text(events) == "Hello from the emulator"
    assert calls(upstream) == ["cached"]


def assert_degrades_to_a_miss(process: ProxyProcess, upstream: OpenAIEmulator, budget: float) -> None:
    prompt = unique()
    with httpx.Client(base_url=process.url, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30) as c:
        for i in range(3):
            started = time.monotonic()
            r = post(c, prompt=prompt)
            elapsed = time.monotonic() - started
            assert r.status_code == 200, r.text
            # Served as a miss, and said as the outage it is (README, "Cache").
            assert r.headers["x-switchyard-cache"] == "error"
            assert elapsed < budget, (i, elapsed)
        started = time.monotonic()
        _, events = post_stream(c, prompt=prompt)
        assert stream_text(events) == "Hello from the emulator"
        assert time.monotonic() - started < budget
    assert calls(upstream) == ["cached"] * 4


def test_redis_down_degrades_to_a_miss(emulator, upstream, tmp_path):
    process = start_proxy(emulator, tmp_path, 'cache: {backend: redis, url: "redis://127.0.0.1:1/0"}')
    try:
        assert_degrades_to_a_miss(process, upstream, budget=0.5)
    finally:
        process.stop()


def test_redis_that_never_answers_degrades_to_a_quick_miss(emulator, upstream, tmp_path):
    # A listening socket nobody accepts from: connects succeed, commands hang.
    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(64)
        port = black_hole.getsockname()[1]
        process = start_proxy(emulator, tmp_path, f'cache: {{backend: redis, url: "redis://127.0.0.1:{port}/0"}}')
        try:
            assert_degrades_to_a_miss(process, upstream, budget=1.0)
        finally:
            process.stop()


# -- the memory backend is bounded ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_memory_proxy(emulator, tmp_path_factory) -> Iterator[ProxyProcess]:
    process = start_proxy(emulator, tmp_path_factory.mktemp("small-memory"), "cache: {backend: memory, max_entries: 3}")
    yield process
    process.stop()


def test_the_memory_backend_evicts_the_least_recently_used(small_memory_proxy, upstream):
    prompts = [unique() for _ in range(4)]
    with httpx.Client(base_url=small_memory_proxy.url, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30) as c:
        for prompt in prompts:
            assert post(c, prompt=prompt).headers["x-switchyard-cache"] == "miss"
        assert post(c, prompt=prompts[3]).headers["x-switchyard-cache"] == "hit"
        assert post(c, prompt=prompts[1]).headers["x-switchyard-cache"] == "hit"
        assert post(c, prompt=prompts[0]).headers["x-switchyard-cache"] == "miss"  # evicted by the 4th
    assert len(calls(upstream)) == 5


def test_a_recently_read_entry_survives_eviction(small_memory_proxy, upstream):
    a, b, c_, d = (unique() for _ in range(4))
    with httpx.Client(base_url=small_memory_proxy.url, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30) as c:
        for prompt in (a, b, c_):
            assert post(c, prompt=prompt).headers["x-switchyard-cache"] == "miss"
        assert post(c, prompt=a).headers["x-switchyard-cache"] == "hit"  # a is now the most recent
        assert post(c, prompt=d).headers["x-switchyard-cache"] == "miss"  # evicts b, not a
        assert post(c, prompt=a).headers["x-switchyard-cache"] == "hit"
        assert post(c, prompt=b).headers["x-switchyard-cache"] == "miss"
