"""Model groups (README, "Routing policy") over real sockets: a group's defaults, the request's
fields overriding them, fallback chains through other groups, the key's allowlist on what is
finally called, context-window fallback, and each balancing strategy's distribution with one
slow and one fast emulated upstream.

`emu` is the OpenAI emulator, so a recorded call shows the upstream model id without its provider.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from proxy.config import ConfigError, parse_config
from tests.conftest import KEY_A, KEY_B, start_proxy
from tests.emulators.openai_server import OpenAIEmulator, Reply, openai_error
from tests.proxy_process import ProxyProcess

URL = "/v2/router/completions"

GROUPS = """
groups:
  policy:
    targets: [{model: emu/p-main}]
    fallbacks: [emu/p-fb]
    retry: {count: 1, on_codes: [429]}
    fallback_on_codes: [418]
  timed:
    targets: [{model: emu/t-main}]
    fallbacks: [emu/t-fb]
    timeout: {call_timeout: 300}
    fallback_on_codes: [408]
  cached:
    targets: [{model: emu/cached}]
    cache: {ttl: 60}
  first:
    targets: [{model: emu/c1}]
    fallbacks: [second, emu/c-last]
  second:
    targets: [{model: emu/c2}]
    fallbacks: [third]
  third:
    targets: [{model: emu/c3}]
  allowed:
    targets: [{model: emu/allowed-1}, {model: emu/allowed-2}]
  mixed:
    targets: [{model: emu/allowed-3}, {model: emu/forbidden}]
  bigger:
    targets: [{model: emu/small-window}]
    fallbacks: [emu/large-window]
  weighted:
    targets: [{model: emu/w-slow, weight: 1}, {model: emu/w-fast, weight: 3}]
  busy:
    strategy: least_busy
    targets: [{model: emu/lb-slow}, {model: emu/lb-fast}]
  quick:
    strategy: latency
    targets: [{model: emu/lat-slow}, {model: emu/lat-fast}]
"""


@pytest.fixture(scope="module")
def grouped(emulator: OpenAIEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    process = start_proxy(emulator, tmp_path_factory.mktemp("groups"), GROUPS)
    yield process
    process.stop()


@pytest.fixture()
def client(grouped: ProxyProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=grouped.url, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30) as c:
        yield c


def calls(upstream: OpenAIEmulator) -> list[str | None]:
    return [r.model for r in upstream.requests if r.path == "/v1/completions"]


def post(client: httpx.Client, **body: object) -> httpx.Response:
    body.setdefault("prompt", "hi")
    return client.post(URL, json=body)


# -- a group's defaults and the merge rule ---------------------------------------------------------------

def test_group_retry_applies_when_the_request_has_none(client, upstream):
    upstream.script("p-main", Reply(status=429), Reply())
    r = post(client, model="policy")
    assert r.status_code == 200, r.text
    assert calls(upstream) == ["p-main", "p-main"]
    assert r.headers["x-switchyard-model"] == "emu/p-main"


def test_request_retry_replaces_the_groups_whole_retry(client, upstream):
    # The request retries only 503: the group's retry on 429 no longer applies, and 429 is not in
    # the group's fallback_on_codes either, so the 429 is the answer.
    upstream.script("p-main", Reply(status=429))
    r = post(client, model="policy", retry={"count": 2, "on_codes": [503]})
    assert r.status_code == 429, r.text
    assert calls(upstream) == ["p-main"]


def test_group_fallback_on_codes_decide_what_falls_back(client, upstream):
    upstream.script("p-main", Reply(status=418, error_body=openai_error(400, message="teapot")))
    r = post(client, model="policy")
    assert r.status_code == 200, r.text
    assert calls(upstream) == ["p-main", "p-fb"]
    upstream.reset()
    upstream.script("p-main", Reply(status=503))  # default codes would fall back; the group's do not
    r = post(client, model="policy")
    assert r.status_code == 503, r.text
    assert calls(upstream) == ["p-main"]


def test_request_fallback_on_codes_override_the_groups(client, upstream):
    upstream.script("p-main", Reply(status=503))
    r = post(client, model="policy", fallback_on_codes=[503])
    assert r.status_code == 200, r.text
    assert calls(upstream) == ["p-main", "p-fb"]


def test_request_fallbacks_replace_the_groups(client, upstream):
    upstream.script("p-main", Reply(status=418))
    r = post(client, model="policy", fallbacks=[{"model": "emu/p-other"}])
    assert r.status_code == 200, r.text
    assert calls(upstream) == ["p-main", "p-other"]


def test_orq_block_fields_override_the_group_too(client, upstream):
    upstream.script("p-main", Reply(status=418))
    r = post(client, model="policy", orq={"fallbacks": [{"model": "emu/p-orq"}]})
    assert r.status_code == 200, r.text
    assert calls(upstream) == ["p-main", "p-orq"]


def test_group_timeout_bounds_each_attempt_and_request_timeout_overrides_it(client, upstream):
    upstream.script("t-main", Reply(delay_s=0.6))
    started = time.monotonic()
    r = post(client, model="timed")
    assert r.status_code == 200, r.text
    assert calls(upstream) == ["t-main", "t-fb"]
    assert time.monotonic() - started < 0.6
    upstream.reset()
    upstream.script("t-main", Reply(delay_s=0.6))
    r = post(client, model="timed", timeout={"call_timeout": 3000})
    assert r.status_code == 200, r.text
    assert calls(upstream) == ["t-main"]


def test_group_cache_default(client, upstream):
    first = post(client, model="cached", prompt="cache me by group")
    second = post(client, model="cached", prompt="cache me by group")
    assert first.status_code == second.status_code == 200
    assert first.headers["x-switchyard-cache"] == "miss"
    assert second.headers["x-switchyard-cache"] == "hit"
    assert calls(upstream) == ["cached"]


def test_fallback_groups_bring_their_own_chain_in_order(client, upstream):
    for model in ("c1", "c2", "c3"):
        upstream.script(model, Reply(status=503))
    r = post(client, model="first")
    assert r.status_code == 200, r.text
    assert calls(upstream) == ["c1", "c2", "c3", "c-last"]
    assert r.headers["x-switchyard-model"] == "emu/c-last"


def test_a_request_fallback_may_name_a_group(client, upstream):
    upstream.script("solo", Reply(status=500))
    upstream.script("c2", Reply(status=500))
    r = post(client, model="emu/solo", fallbacks=[{"model": "second"}])
    assert r.status_code == 200, r.text
    assert calls(upstream) == ["solo", "c2", "c3"]


def test_a_group_is_not_a_load_balancer_member(client, upstream):
    r = post(client, load_balancer={"type": "weight_based", "models": [{"model": "policy", "weight": 1}]})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "load_balancer.models[0].model"
    assert calls(upstream) == []


# -- the key's allowlist applies to the models finally called --------------------------------------------

def test_allowlist_checks_the_groups_members_not_its_name(grouped, upstream):
    with httpx.Client(base_url=grouped.url, headers={"Authorization": f"Bearer {KEY_B}"}, timeout=10) as b:
        ok = post(b, model="allowed")  # the name is no `emu/allowed-*`, its members are
        refused = post(b, model="mixed")
    assert ok.status_code == 200, ok.text
    assert refused.status_code == 403, refused.text
    assert "emu/forbidden" in refused.json()["error"]["message"]
    assert refused.json()["error"]["param"] == "model"
    assert len(calls(upstream)) == 1  # the refused request called nothing


# -- context-window fallback -----------------------------------------------------------------------------

CONTEXT_ERRORS = {
    "openai": {"error": {"message": "This model's maximum context length is 8192 tokens.",
                         "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}},
    "llamacpp": {"error": {"code": 400, "message": "the request exceeds the available context size, try "
                           "increasing it", "type": "exceed_context_size_error", "n_prompt_tokens": 4000,
                           "n_ctx": 2048}},
    "anthropic-like": {"error": {"message": "prompt is too long: 208310 tokens > 200000 maximum",
                                 "type": "invalid_request_error", "param": None, "code": None}},
}


@pytest.mark.parametrize("shape", sorted(CONTEXT_ERRORS))
def test_context_window_error_moves_to_the_larger_model(client, upstream, shape):
    upstream.script("small-window", Reply(status=400, error_body=CONTEXT_ERRORS[shape]))
    r = post(client, model="bigger")
    assert r.status_code == 200, r.text
    assert calls(upstream) == ["small-window", "large-window"]
    assert r.headers["x-switchyard-model"] == "emu/large-window"


def test_any_other_400_is_returned_as_it_is(client, upstream):
    upstream.script("small-window", Reply(status=400))
    r = post(client, model="bigger")
    assert r.status_code == 400
    assert calls(upstream) == ["small-window"]


def test_context_window_error_on_the_last_candidate_is_the_answer(client, upstream):
    upstream.script("small-window", Reply(status=400, error_body=CONTEXT_ERRORS["openai"]))
    upstream.script("large-window", Reply(status=400, error_body=CONTEXT_ERRORS["openai"]))
    r = post(client, model="bigger")
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "context_length_exceeded"
    assert calls(upstream) == ["small-window", "large-window"]


# -- balancing strategies: one slow and one fast upstream ------------------------------------------------

SLOW, FAST = 0.15, 0.005


def served(upstream: OpenAIEmulator) -> Counter[str | None]:
    return Counter(calls(upstream))


def test_weighted_follows_the_weights_whatever_the_speed(client, upstream):
    upstream.script("w-slow", Reply(delay_s=SLOW))
    upstream.script("w-fast", Reply(delay_s=FAST))
    for _ in range(40):
        assert post(client, model="weighted").status_code == 200
    counts = served(upstream)
    print(f"weighted 1:3, 40 sequential: {dict(counts)}")
    # Binomial(40, 0.75): 30 ± 2.7; speed plays no part.
    assert 20 <= counts["w-fast"] <= 38 and counts["w-slow"] >= 2


def _concurrently(url: str, model: str, total: int, workers: int) -> None:
    def worker(n: int) -> set[int]:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30) as c:
            return {post(c, model=model).status_code for _ in range(n)}

    with ThreadPoolExecutor(workers) as pool:
        statuses = set().union(*pool.map(worker, [total // workers] * workers))
    assert statuses == {200}


def test_least_busy_sends_most_requests_to_the_upstream_that_frees_up(grouped, upstream):
    upstream.script("lb-slow", Reply(delay_s=1.0))
    upstream.script("lb-fast", Reply(delay_s=FAST))
    _concurrently(grouped.url, "busy", total=48, workers=6)
    counts = served(upstream)
    print(f"least_busy, 48 requests 6 at a time: {dict(counts)}")
    # Equal weights would give ~24 each. The slow one is drawn only while it has no more in
    # flight than the fast one, which frees up at once: about 3 (one per worker pair) a second.
    assert counts["lb-slow"] <= 12 and counts["lb-fast"] >= 36


def test_latency_aware_learns_the_fast_upstream(client, upstream):
    upstream.script("lat-slow", Reply(delay_s=SLOW))
    upstream.script("lat-fast", Reply(delay_s=FAST))
    for _ in range(30):
        assert post(client, model="quick").status_code == 200
    counts = served(upstream)
    print(f"latency, 30 sequential: {dict(counts)}")
    # A member never measured is tried (costs nothing); once measured, the slow one loses every
    # power-of-two comparison.
    assert counts["lat-slow"] <= 2 and counts["lat-fast"] >= 28


# -- config checks ---------------------------------------------------------------------------------------

BASE = """
auth: {keys: [{name: t, key: "sk-test-key-0123456789"}]}
providers:
  emu: {type: openai, base_url: "http://127.0.0.1:9/v1"}
aliases: {fast: emu/fast}
"""


@pytest.mark.parametrize(("groups", "message"), [
    ("a: {targets: [{model: emu/x}], fallbacks: [b]}\n  b: {targets: [{model: emu/y}], fallbacks: [a]}",
     "groups.a.fallbacks: fallback cycle: a → b → a"),
    ("a: {targets: [{model: nowhere/x}]}", "groups.a.targets[0].model"),
    ("a: {targets: [{model: emu/x}], fallbacks: [nothing]}", "groups.a.fallbacks[0]"),
    ("a: {targets: [{model: b}]}\n  b: {targets: [{model: emu/y}]}", "a target is a model, not a group"),
    ("fast: {targets: [{model: emu/x}]}", "groups.fast: is also an alias"),
    ("a: {targets: [{model: emu/x}], strategy: fastest}", "groups.a.strategy: Invalid enum value 'fastest'"),
    ("a: {targets: []}", "groups.a.targets: Expected `array` of length >= 1"),
])
def test_group_config_errors_name_the_key(groups, message):
    with pytest.raises(ConfigError) as err:
        parse_config(f"{BASE}groups:\n  {groups}\n", "test.yaml")
    assert message in str(err.value)


def test_a_long_chain_of_groups_is_refused():
    groups = "\n".join(f"  g{i}: {{targets: [{{model: emu/m{i}}}], fallbacks: [g{i + 1}]}}" for i in range(20))
    with pytest.raises(ConfigError, match="more than 17"):
        parse_config(f"{BASE}groups:\n{groups}\n  g20: {{targets: [{{model: emu/m20}}]}}\n", "test.yaml")


def test_groups_and_breakers_parse(tmp_path: Path):
    config = parse_config(f"{BASE}groups:\n  a: {{targets: [{{model: fast, weight: 2}}], strategy: latency}}\n"
                          "breakers: {consecutive_failures: 2, scope: provider}\n", "test.yaml")
    assert config.groups["a"].strategy == "latency"
    assert config.breakers is not None and config.breakers.scope == "provider"
