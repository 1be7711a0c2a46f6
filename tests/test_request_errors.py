"""Bad requests, auth, limits and upstream failures: every refusal in the one error shape.

Every error body is exactly `{"error": {message, type, param, code}}` (DESIGN.md, "Errors"),
`param` is the JSON path of the offending field, and every response carries `x-request-id`.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import KEY_A, KEY_B, KEY_C
from tests.emulators.openai_server import Reply, openai_error

URL = "/v2/router/completions"
BASE: dict[str, Any] = {"model": "emu/m", "prompt": "hi"}
GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")

INVALID = "invalid_request_error"
BODY = "invalid_request_body"
NOT_FOUND_MODEL = "model_not_found"


def assert_error(r: httpx.Response, status: int, type_: str, param: str | None, code: str | None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers
    assert r.headers.get("x-request-id"), "every response carries x-request-id"
    body = r.json()
    assert list(body) == ["error"], body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"], error
    assert "Traceback" not in error["message"]
    assert (error["type"], error["param"], error["code"]) == (type_, param, code), error
    return error


def post(client: httpx.Client, body: Any, **kwargs: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
    return client.post(URL, content=content, headers=headers, **kwargs)


def unique(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex}"


def req(**fields: Any) -> dict[str, Any]:
    return {**BASE, **fields}


def orq(**fields: Any) -> dict[str, Any]:
    return req(orq=fields)


def kb(**fields: Any) -> dict[str, Any]:
    return orq(knowledge_bases=[{"knowledge_id": "kb_1", **fields}])


def lb(*models: dict[str, Any], type_: str = "weight_based") -> dict[str, Any]:
    return req(load_balancer={"type": type_, "models": list(models)})


THINK = {"type": "enabled", "budget_tokens": 2048}

# (id, body, param, code): every one a 400 of type invalid_request_error that reaches no upstream.
BAD_REQUESTS: list[tuple[str, Any, str | None, str]] = [
    # -- not a JSON object
    ("malformed-json", b'{"model": "emu/m", "prompt": ', None, BODY),
    ("malformed-json-after-bad-field", b'{"model": 1, "prompt": ', None, BODY),
    ("not-json-at-all", b"model=emu/m&prompt=hi", None, BODY),
    ("empty-body", b"", None, BODY),
    ("whitespace-body", b" \r\n ", None, BODY),
    ("json-array", b'[{"model": "emu/m", "prompt": "hi"}]', None, BODY),
    ("json-string", b'"hi"', None, BODY),
    ("json-null", b"null", None, BODY),
    ("nested-too-deeply", b'{"model": "emu/m", "prompt": "hi", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}", None, BODY),
    ("nested-too-deeply-with-float", b'{"model": "emu/m", "prompt": "hi", "n": 1.0, "x": ' + b"[" * 5000 + b"]" * 5000
     + b"}", None, BODY),
    # -- wrong types
    ("model-int", req(model=1), "model", BODY),
    ("prompt-object", req(prompt={}), "prompt", BODY),
    ("prompt-int", req(prompt=5), "prompt", BODY),
    ("prompt-list-with-int", req(prompt=["a", 1]), "prompt[1]", BODY),
    ("prompt-empty-list", req(prompt=[]), "prompt", BODY),
    ("stream-list", req(stream=[]), "stream", BODY),
    ("stream-string", req(stream="true"), "stream", BODY),
    ("stream-int", req(stream=1), "stream", BODY),
    ("echo-string", req(echo="yes"), "echo", BODY),
    ("temperature-string", req(temperature="hot"), "temperature", BODY),
    ("temperature-numeric-string", req(temperature="0.5"), "temperature", BODY),
    ("temperature-bool", req(temperature=True), "temperature", BODY),
    ("max_tokens-numeric-string", req(max_tokens="5"), "max_tokens", BODY),
    ("max_tokens-fraction", req(max_tokens=5.5), "max_tokens", BODY),
    ("max_tokens-bool", req(max_tokens=True), "max_tokens", BODY),
    ("max_tokens-huge", b'{"model": "emu/m", "prompt": "hi", "max_tokens": 1e400}', "max_tokens", BODY),
    ("n-fraction", req(n=2.5), "n", BODY),
    ("seed-fraction", req(seed=1.5), "seed", BODY),
    ("stop-int", req(stop=3), "stop", BODY),
    ("stop-list-with-int", req(stop=["a", 1]), "stop[1]", BODY),
    ("user-int", req(user=5), "user", BODY),
    ("retry-count-string", req(retry={"count": "3"}), "retry.count", BODY),
    ("retry-not-object", req(retry=3), "retry", BODY),
    ("fallbacks-not-list", req(fallbacks="emu/x"), "fallbacks", BODY),
    ("fallback-without-model", req(fallbacks=[{}]), "fallbacks[0].model", BODY),
    ("orq-not-object", req(orq=[]), "orq", BODY),
    # -- out of range, every ranged field of the spec
    ("presence_penalty-3", req(presence_penalty=3), "presence_penalty", BODY),
    ("presence_penalty--2.5", req(presence_penalty=-2.5), "presence_penalty", BODY),
    ("frequency_penalty--3", req(frequency_penalty=-3), "frequency_penalty", BODY),
    ("frequency_penalty-2.01", req(frequency_penalty=2.01), "frequency_penalty", BODY),
    ("temperature-2.5", req(temperature=2.5), "temperature", BODY),
    ("temperature-negative", req(temperature=-0.1), "temperature", BODY),
    ("top_p-1.5", req(top_p=1.5), "top_p", BODY),
    ("top_p-negative", req(top_p=-0.5), "top_p", BODY),
    ("n-0", req(n=0), "n", BODY),
    ("max_tokens--1", req(max_tokens=-1), "max_tokens", BODY),
    ("stop-5-items", req(stop=["a", "b", "c", "d", "e"]), "stop", BODY),
    ("retry.count-0", req(retry={"count": 0}), "retry.count", BODY),
    ("retry.count-6", req(retry={"count": 6}), "retry.count", BODY),
    ("retry.on_codes-empty", req(retry={"on_codes": []}), "retry.on_codes", BODY),
    ("retry.on_codes-99", req(retry={"on_codes": [99]}), "retry.on_codes[0]", BODY),
    ("retry.on_codes-600", req(retry={"on_codes": [429, 600]}), "retry.on_codes[1]", BODY),
    ("orq.retry.count-9", orq(retry={"count": 9}), "orq.retry.count", BODY),
    ("cache.ttl-0", req(cache={"type": "exact_match", "ttl": 0}), "cache.ttl", BODY),
    ("cache.ttl-259201", req(cache={"type": "exact_match", "ttl": 259201}), "cache.ttl", BODY),
    ("cache.type-semantic", req(cache={"type": "semantic"}), "cache.type", BODY),
    ("cache-without-type", req(cache={"ttl": 60}), "cache.type", BODY),
    ("orq.cache.ttl-0", orq(cache={"type": "exact_match", "ttl": 0}), "orq.cache.ttl", BODY),
    ("load_balancer.type-wrong", lb({"model": "emu/a"}, type_="round_robin"), "load_balancer.type", BODY),
    ("load_balancer-weight-0", lb({"model": "emu/a"}, {"model": "emu/b", "weight": 0}),
     "load_balancer.models[1].weight", BODY),
    ("load_balancer-weight-1.5", lb({"model": "emu/a"}, {"model": "emu/b", "weight": 1.5}),
     "load_balancer.models[1].weight", BODY),
    ("load_balancer-models-empty", lb(), "load_balancer.models", BODY),
    ("load_balancer-without-models", req(load_balancer={"type": "weight_based"}), "load_balancer.models", BODY),
    ("load_balancer-model-without-model", lb({"weight": 0.5}), "load_balancer.models[0].model", BODY),
    ("orq.load_balancer-weight-0", orq(load_balancer={"type": "weight_based", "models": [{"model": "emu/a", "weight": 0}]}),
     "orq.load_balancer.models[0].weight", BODY),
    ("timeout.call_timeout-0", req(timeout={"call_timeout": 0}), "timeout.call_timeout", BODY),
    ("timeout-without-call_timeout", req(timeout={}), "timeout.call_timeout", BODY),
    ("orq.timeout.call_timeout-0", orq(timeout={"call_timeout": 0}), "orq.timeout.call_timeout", BODY),
    ("thinking.type-unknown", req(thinking={"type": "turbo"}), "thinking.type", BODY),
    ("thinking-without-type", req(thinking={"budget_tokens": 2048}), "thinking.type", BODY),
    ("thinking-enabled-without-budget", req(thinking={"type": "enabled"}), "thinking.budget_tokens", BODY),
    ("thinking.budget_tokens-1000", req(thinking={"type": "enabled", "budget_tokens": 1000}),
     "thinking.budget_tokens", BODY),
    ("thinking.budget_tokens-equal-max_tokens", req(thinking=THINK, max_tokens=2048), "thinking.budget_tokens", BODY),
    ("thinking.budget_tokens-above-max_tokens", req(thinking=THINK, max_tokens=1500), "thinking.budget_tokens", BODY),
    ("thinking.thinking_level-extreme", req(thinking={**THINK, "thinking_level": "extreme"}),
     "thinking.thinking_level", BODY),
    # -- the orq block
    ("orq.identity-without-id", orq(identity={"display_name": "Jane"}), "orq.identity.id", BODY),
    ("orq.identity.email-bad", orq(identity={"id": "id_1", "email": "bad"}), "orq.identity.email", BODY),
    ("orq.contact-without-id", orq(contact={"email": "jane@example.com"}), "orq.contact.id", BODY),
    ("orq.thread-without-id", orq(thread={"tags": ["a"]}), "orq.thread.id", BODY),
    ("orq.prompt.version-v2", orq(prompt={"id": "p_1", "version": "v2"}), "orq.prompt.version", BODY),
    ("orq.inputs-item-without-key", orq(inputs=[{"value": 1}]), "orq.inputs[0].key", BODY),
    ("orq.knowledge_bases-without-knowledge_id", orq(knowledge_bases=[{"top_k": 5}]),
     "orq.knowledge_bases[0].knowledge_id", BODY),
    ("kb.top_k-0", kb(top_k=0), "orq.knowledge_bases[0].top_k", BODY),
    ("kb.top_k-101", kb(top_k=101), "orq.knowledge_bases[0].top_k", BODY),
    ("kb.threshold-1.5", kb(threshold=1.5), "orq.knowledge_bases[0].threshold", BODY),
    ("kb.search_type-wrong", kb(search_type="fuzzy_search"), "orq.knowledge_bases[0].search_type", BODY),
    ("kb.filter_by-unknown-operator", kb(filter_by={"year": {"like": 2020}}),
     "orq.knowledge_bases[0].filter_by.year.like", BODY),
    ("kb.filter_by-gt-string", kb(filter_by={"year": {"gt": "2020"}}), "orq.knowledge_bases[0].filter_by.year.gt", BODY),
    ("kb.filter_by-in-not-list", kb(filter_by={"tag": {"in": "a"}}), "orq.knowledge_bases[0].filter_by.tag.in", BODY),
    ("kb.filter_by-and-not-array", kb(filter_by={"and": {"tag": {"eq": "a"}}}),
     "orq.knowledge_bases[0].filter_by.and", BODY),
    ("kb.filter_by-or-item-bad", kb(filter_by={"or": [{"tag": {"eq": "a"}}, {"n": {"lt": "x"}}]}),
     "orq.knowledge_bases[0].filter_by.or[1].n.lt", BODY),
    ("kb.rerank_config-without-model", kb(rerank_config={"top_k": 5}),
     "orq.knowledge_bases[0].rerank_config.model", BODY),
    ("kb.rerank_config.top_k-101", kb(rerank_config={"model": "cohere/rerank", "top_k": 101}),
     "orq.knowledge_bases[0].rerank_config.top_k", BODY),
    # -- required fields
    ("missing-model", {"prompt": "hi"}, "model", BODY),
    ("missing-prompt", {"model": "emu/m"}, "prompt", BODY),
    # -- OpenAI's stream_options, accepted on completions, still has its shape
    ("stream_options-not-object", req(stream=True, stream_options=5), "stream_options", BODY),
    ("stream_options.include_usage-not-bool", req(stream=True, stream_options={"include_usage": "yes"}),
     "stream_options.include_usage", BODY),
    # -- model names (a 400 naming the field, code model_not_found)
    ("model-unknown-provider", req(model="nope/x"), "model", NOT_FOUND_MODEL),
    ("model-without-slash", req(model="gpt-4o"), "model", NOT_FOUND_MODEL),
    ("model-empty-upstream-id", req(model="emu/"), "model", NOT_FOUND_MODEL),
    ("fallbacks[1].model-unknown-provider", req(fallbacks=[{"model": "emu/b"}, {"model": "nope/x"}]),
     "fallbacks[1].model", NOT_FOUND_MODEL),
    ("orq.fallbacks[0].model-unknown-provider", orq(fallbacks=[{"model": "nope/x"}]),
     "orq.fallbacks[0].model", NOT_FOUND_MODEL),
    ("load_balancer.models[1].model-unknown-provider", lb({"model": "emu/a"}, {"model": "nope/b"}),
     "load_balancer.models[1].model", NOT_FOUND_MODEL),
]


@pytest.mark.parametrize(("body", "param", "code"), [c[1:] for c in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS])
def test_bad_request(client, upstream, body, param, code):
    r = post(client, body)
    assert_error(r, 400, INVALID, param, code)
    assert upstream.requests == [], "a refused request reaches no provider"


def test_bad_request_ids_are_unique():
    ids = [c[0] for c in BAD_REQUESTS]
    assert len(ids) == len(set(ids))


def test_error_message_names_the_field(client, upstream):
    error = assert_error(post(client, req(retry={"count": 6})), 400, INVALID, "retry.count", BODY)
    assert "retry.count" in error["message"] and "5" in error["message"]


# -- values that must be accepted ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "sent"),
    [
        ({"retry": {"count": 3.0}}, {}),
        ({"retry": {"count": 1.0, "on_codes": [429.0, 503.0]}}, {}),
        ({"orq": {"retry": {"count": 2.0, "on_codes": [500.0]}}}, {}),
        ({"timeout": {"call_timeout": 30000.0}}, {}),
        ({"max_tokens": 5.0}, {"max_tokens": 5}),
        ({"n": 2.0}, {"n": 2}),
        ({"seed": 42.0}, {"seed": 42}),
        ({"temperature": 1}, {"temperature": 1.0}),
        ({"cache": {"type": "exact_match", "ttl": 60.0}}, {}),
        ({"orq": {"knowledge_bases": None, "identity": {"id": "i", "metadata": [{"score": 1.0}]}}}, {}),
    ],
    ids=["retry.count-3.0", "on_codes-floats", "orq.retry-floats", "call_timeout-30000.0", "max_tokens-5.0", "n-2.0",
         "seed-42.0", "temperature-int", "cache.ttl-60.0", "identity-metadata-floats"],
)
def test_integral_floats_accepted(client, upstream, fields, sent):
    r = post(client, req(prompt=unique("floats"), **fields))  # unique: never a cache hit
    assert r.status_code == 200, r.text
    body = upstream.requests[-1].body
    for name, value in sent.items():
        assert body[name] == value and type(body[name]) is type(value), (name, body[name])


def test_unknown_nested_fields_ignored_and_top_level_ones_passed_through(client, upstream):
    """DESIGN: fields outside our schema reach OpenAI-compatible upstreams unchanged; the orq
    SDK's own fields are ours and never forwarded."""
    r = post(client, req(frobnicate=True, top_k=40, logprobs=2, retry={"count": 1, "jitter": "max"},
                         orq={"colour": "blue", "thread": {"id": "t", "extra": 1}},
                         fallback_on_codes=[500], plugins=[]))
    assert r.status_code == 200, r.text
    body = upstream.requests[-1].body
    assert body["frobnicate"] is True and body["top_k"] == 40 and body["logprobs"] == 2
    for name in ("orq", "retry", "fallback_on_codes", "plugins", "colour", "jitter"):
        assert name not in body


def test_plugins_refused_until_built(client, upstream):
    r = post(client, req(plugins=[{"type": "pii_redaction"}]))
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "plugins"
    assert upstream.requests == []


def test_prompt_list_of_strings(client, upstream):
    r = post(client, req(prompt=["one", "two"]))
    assert r.status_code == 200, r.text
    assert upstream.requests[-1].body["prompt"] == ["one", "two"]
    assert [c["index"] for c in r.json()["choices"]] == [0, 1]


def test_range_boundaries_accepted(client, upstream):
    edges = req(max_tokens=1025, temperature=2, top_p=0, presence_penalty=-2, frequency_penalty=2, n=1,
                stop=["a", "b", "c", "d"], retry={"count": 5, "on_codes": [100, 599]},
                cache={"type": "exact_match", "ttl": 259200},
                load_balancer={"type": "weight_based", "models": [{"model": "emu/m", "weight": 1},
                                                                  {"model": "emu/m", "weight": 0.001}]},
                timeout={"call_timeout": 1000})
    r = post(client, {**edges, "prompt": unique("edges")})
    assert r.status_code == 200, r.text
    # The smallest budget passes validation; this provider then refuses thinking by name.
    r = post(client, req(thinking={"type": "enabled", "budget_tokens": 1024, "thinking_level": "high"},
                         max_tokens=1025))
    assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_parameter", r.text
    r = post(client, req(prompt=unique("edges"), max_tokens=0, temperature=0, top_p=1, presence_penalty=2, frequency_penalty=-2,
                         cache={"type": "exact_match", "ttl": 1}, thinking={"type": "disabled"}))
    assert r.status_code == 200, r.text


# The spec's own example of the `orq` block, plus every other field of the request schema.
SPEC_EXAMPLE_ORQ: dict[str, Any] = {
    "retry": {"count": 3, "on_codes": [429, 500, 502]},
    "fallbacks": [{"model": "emu2/fallback-1"}, {"model": "emu2/fallback-2"}],
    "identity": {"id": "identity_01ARZ3NDEKTSV4RRFFQ69G5FAV", "display_name": "Jane Doe",
                 "email": "jane.doe@example.com", "metadata": [{"department": "Engineering"}],
                 "logo_url": "https://example.com/a.jpg", "tags": ["hr", "engineering"]},
    "contact": {"id": "contact_01ARZ3NDEKTSV4RRFFQ69G5FAV", "display_name": "Jane Doe",
                "email": "jane.doe@example.com"},
    "thread": {"id": "thread_01ARZ3NDEKTSV4RRFFQ69G5FAV", "tags": ["customer-support"]},
    "inputs": {"customer_name": "John Smith", "issue_type": "billing"},
    "cache": {"ttl": 3600, "type": "exact_match"},
    "timeout": {"call_timeout": 30000},
    "name": "spec-example",
}
SPEC_EXAMPLE_KNOWLEDGE = [{
    "knowledge_id": "knowledge_01ARZ3NDEKTSV4RRFFQ69G5FAV", "top_k": 5, "threshold": 0.5,
    "search_type": "hybrid_search",
    "filter_by": {"and": [{"year": {"gte": 2020}}, {"tag": {"in": ["a", 1, True]}}, {"x": {"exists": True}}]},
    "search_options": {"include_vectors": False, "include_metadata": True, "include_scores": True},
    "rerank_config": {"model": "cohere/rerank-multilingual-v3.0", "threshold": 0.2, "top_k": 10},
    "agentic_rag_config": {"model": "emu/agent"},
    "query": "billing",
}]


def test_spec_example_request_decodes(client, upstream, proxy):
    rid = f"spec-example-{uuid.uuid4().hex[:8]}"
    salt = uuid.uuid4().hex  # the example asks for the cache: never a hit from an earlier run
    body = req(prompt="Hello {{customer_name}}, about {{issue_type}} " + salt, echo=False, frequency_penalty=0.1,
               max_tokens=20, presence_penalty=0.2, seed=7, stop=["\n\n"], temperature=0.7, top_p=0.9, n=1,
               user="user-1", name="trace-name", thinking={"type": "disabled"}, orq=SPEC_EXAMPLE_ORQ)
    r = post(client, body, headers={"X-Request-ID": rid})
    assert r.status_code == 200, r.text
    assert r.headers["x-switchyard-model"] == "emu/m"
    sent = upstream.requests[-1].body
    assert sent["model"] == "m" and sent["user"] == "user-1" and sent["seed"] == 7 and sent["stop"] == ["\n\n"]
    # orq.inputs fill the prompt's {{placeholders}} (the templating stage)
    assert sent["prompt"] == "Hello John Smith, about billing " + salt
    for private in ("orq", "name", "thinking", "retry", "fallbacks", "cache", "timeout"):
        assert private not in sent
    # identity, thread and the trace name end up in the request's log line, by id only
    line = _log_line(proxy, rid)
    assert line["identity_id"] == SPEC_EXAMPLE_ORQ["identity"]["id"]
    assert line["thread_id"] == SPEC_EXAMPLE_ORQ["thread"]["id"]
    assert line["trace_name"] == "trace-name"
    assert "jane.doe@example.com" not in json.dumps(line)


def _log_line(proxy, request_id: str) -> dict:
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        for raw in proxy.log().splitlines():
            if request_id in raw:
                try:
                    line = json.loads(raw)
                except ValueError:
                    continue
                if line.get("request_id") == request_id:
                    return line
        time.sleep(0.02)
    raise AssertionError(f"no log line for {request_id}")


def test_spec_example_knowledge_bases_decode(client, upstream):
    """Every knowledge-base field decodes and validates (a bad one is a 400 naming it, see the
    table); retrieval itself is not built and no knowledge base can be configured, so the
    knowledge stage answers 404 rather than a completion without the retrieval asked for."""
    r = post(client, orq(knowledge_bases=SPEC_EXAMPLE_KNOWLEDGE))
    assert_error(r, 404, "not_found_error", "orq.knowledge_bases[0].knowledge_id", "not_found")
    assert SPEC_EXAMPLE_KNOWLEDGE[0]["knowledge_id"] in r.json()["error"]["message"]
    assert upstream.requests == []


# -- auth --------------------------------------------------------------------------------------------------
def _bare(proxy) -> httpx.Client:
    return httpx.Client(base_url=proxy.url, timeout=10)


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer sk-wrong-key", "Bearer", f"Basic {KEY_A}", KEY_A, f"Bearer {KEY_A}x", f"Token {KEY_A}"],
    ids=["none", "wrong-key", "empty-bearer", "basic-scheme", "no-scheme", "key-prefix", "token-scheme"],
)
def test_unauthenticated(proxy, upstream, authorization):
    headers = {"Authorization": authorization} if authorization is not None else {}
    with _bare(proxy) as c:
        r = c.post(URL, json=BASE, headers=headers)
    error = assert_error(r, 401, "authentication_error", None, "invalid_api_key")
    assert KEY_A not in error["message"]
    assert upstream.requests == []


def test_unauthenticated_bad_body_is_still_401(proxy, upstream):
    with _bare(proxy) as c:
        r = c.post(URL, content=b"{not json", headers={"Content-Type": "application/json"})
    assert_error(r, 401, "authentication_error", None, "invalid_api_key")


def test_key_configured_by_sha256(proxy, upstream):
    with _bare(proxy) as c:
        r = c.post(URL, json=BASE, headers={"Authorization": f"Bearer {KEY_C}"})
    assert r.status_code == 200, r.text


def test_bearer_scheme_case_insensitive(proxy, upstream):
    with _bare(proxy) as c:
        r = c.post(URL, json=BASE, headers={"Authorization": f"bearer {KEY_A}"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (req(model="emu/other"), "model"),
        (req(model="emu2/allowed-1"), "model"),
        (req(model="emu/allowed-1", fallbacks=[{"model": "emu/other"}]), "fallbacks[0].model"),
        (req(model="emu/allowed-1", orq={"fallbacks": [{"model": "emu/allowed-2"}, {"model": "emu/x"}]}),
         "orq.fallbacks[1].model"),
        (lb({"model": "emu/allowed-1"}, {"model": "emu/other"}), "load_balancer.models[1].model"),
        (req(model="fast"), "model"),  # an alias is checked as what it resolves to (emu/fast-model)
    ],
    ids=["model", "other-provider", "fallback", "orq-fallback", "load-balancer", "alias"],
)
def test_key_model_scope(proxy, upstream, body, param):
    with _bare(proxy) as c:
        r = c.post(URL, json=body, headers={"Authorization": f"Bearer {KEY_B}"})
    error = assert_error(r, 403, "permission_error", param, "insufficient_scope")
    assert "team-b" in error["message"]
    assert upstream.requests == []


def test_key_model_scope_allows(proxy, upstream):
    with _bare(proxy) as c:
        r = c.post(URL, json=req(model="emu/allowed-1", fallbacks=[{"model": "emu/allowed-2"}]),
                   headers={"Authorization": f"Bearer {KEY_B}"})
    assert r.status_code == 200, r.text
    assert upstream.requests[-1].body["model"] == "allowed-1"


# -- body size -------------------------------------------------------------------------------------------
LIMIT = 65536  # server.max_body_bytes in the test config


def _body_of_size(size: int) -> bytes:
    head = b'{"model": "emu/m", "prompt": "'
    tail = b'"}'
    body = head + b"x" * (size - len(head) - len(tail)) + tail
    assert len(body) == size
    return body


def _chunks(data: bytes, size: int = 4096):
    for i in range(0, len(data), size):
        yield data[i:i + size]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_over_limit(client, upstream, chunked):
    body = _body_of_size(LIMIT + 1)
    content = _chunks(body) if chunked else body
    r = client.post(URL, content=content, headers={"Content-Type": "application/json"})
    if chunked:
        assert r.request.headers.get("transfer-encoding") == "chunked"
    else:
        assert r.request.headers["content-length"] == str(LIMIT + 1)
    error = assert_error(r, 413, INVALID, None, "payload_too_large")
    assert str(LIMIT) in error["message"]
    assert upstream.requests == []


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_at_limit(client, upstream, chunked):
    body = _body_of_size(LIMIT)
    r = client.post(URL, content=_chunks(body) if chunked else body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text


def test_body_far_over_limit_chunked(client, upstream):
    r = client.post(URL, content=_chunks(b"x" * (4 * LIMIT)), headers={"Content-Type": "application/json"})
    assert_error(r, 413, INVALID, None, "payload_too_large")
    # the connection stays usable (or is replaced) for the next request
    assert client.post(URL, json=BASE).status_code == 200


# -- routes ----------------------------------------------------------------------------------------------
def test_get_completions_is_405(client):
    r = client.get(URL)
    assert r.status_code == 405
    assert_error(r, 405, INVALID, None, r.json()["error"]["code"])
    assert "POST" in r.headers.get("allow", ""), "a 405 names the allowed methods"


@pytest.mark.parametrize("path", ["/v1/engines", "/v2/router/completion", "/", "/v2/router/completions/x"])
def test_unknown_path_is_404(client, path):
    assert_error(client.post(path, json=BASE), 404, "not_found_error", None, "not_found")


def test_unknown_path_unauthenticated_is_404(proxy):
    with _bare(proxy) as c:
        assert_error(c.get("/nothing-here"), 404, "not_found_error", None, "not_found")


@pytest.mark.parametrize(("path", "status"), [("/healthz", "ok"), ("/readyz", "ready")])
def test_health_needs_no_key(proxy, path, status):
    with _bare(proxy) as c:
        r = c.get(path)
    assert r.status_code == 200 and r.json() == {"status": status}


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/nowhere"])
def test_every_response_carries_a_request_id(proxy, path):
    with _bare(proxy) as c:
        assert len(c.get(path).headers["x-request-id"]) == 32
        assert c.get(path, headers={"X-Request-ID": "probe-1"}).headers["x-request-id"] == "probe-1"


# -- request ids -----------------------------------------------------------------------------------------
def test_request_id_echoed_and_forwarded(client, upstream):
    rid = "req-Abc.123:xyz_9"
    r = client.post(URL, json=BASE, headers={"X-Request-ID": rid})
    assert r.status_code == 200
    assert r.headers["x-request-id"] == rid
    assert upstream.requests[-1].headers["x-request-id"] == rid


def test_request_id_generated(client, upstream):
    r = client.post(URL, json=BASE)
    rid = r.headers["x-request-id"]
    assert GENERATED_ID.match(rid)
    assert upstream.requests[-1].headers["x-request-id"] == rid
    assert client.post(URL, json=BASE).headers["x-request-id"] != rid


def test_request_id_length_limit(client, upstream):
    longest = "a" * 128
    assert client.post(URL, json=BASE, headers={"X-Request-ID": longest}).headers["x-request-id"] == longest
    assert GENERATED_ID.match(client.post(URL, json=BASE, headers={"X-Request-ID": longest + "a"}).headers["x-request-id"])


@pytest.mark.parametrize("bad", ["x" * 300, "has spaces in it", "semi;colon", 'quote"d', "ü-nicode".encode()],
                         ids=["300-chars", "spaces", "semicolon", "quote", "non-ascii"])
def test_invalid_request_id_replaced(client, upstream, bad):
    r = client.post(URL, json=BASE, headers={"X-Request-ID": bad})
    assert r.status_code == 200
    rid = r.headers["x-request-id"]
    assert GENERATED_ID.match(rid)
    assert upstream.requests[-1].headers["x-request-id"] == rid


@pytest.mark.parametrize(
    ("method", "path", "body", "auth", "status"),
    [
        ("POST", URL, BASE, False, 401),
        ("POST", URL, {"model": "emu/m"}, True, 400),
        ("POST", URL, {"model": "nope/x", "prompt": "hi"}, True, 400),
        ("GET", URL, None, True, 405),
        ("GET", "/nowhere", None, False, 404),
        ("POST", URL, {"model": "dead/x", "prompt": "hi"}, True, 502),
    ],
    ids=["401", "400", "400-model", "405", "404", "502"],
)
def test_errors_echo_request_id(proxy, upstream, method, path, body, auth, status):
    headers = {"X-Request-ID": "err-echo-1"}
    if auth:
        headers["Authorization"] = f"Bearer {KEY_A}"
    with _bare(proxy) as c:
        r = c.request(method, path, json=body, headers=headers)
    assert r.status_code == status
    assert r.headers["x-request-id"] == "err-echo-1"
    with _bare(proxy) as c:
        r = c.request(method, path, json=body, headers={k: v for k, v in headers.items() if k != "X-Request-ID"})
    assert GENERATED_ID.match(r.headers["x-request-id"])


# -- upstream errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "error_body", "type_", "param", "code"),
    [
        (400, openai_error(400, message="max_tokens is too large for this model"), INVALID, None, "provider_error"),
        (404, None, "not_found_error", None, "model_not_found"),
        (422, {"error": {"message": "prompt is unprocessable", "type": "invalid_request_error",
                         "param": "prompt", "code": None}}, INVALID, "prompt", "provider_error"),
    ],
    ids=["400", "404", "422"],
)
def test_upstream_client_errors_returned_as_they_are(client, upstream, status, error_body, type_, param, code):
    upstream.script("m", Reply(status=status, error_body=error_body))
    r = post(client, req(fallbacks=[{"model": "emu2/b"}], retry={"count": 2}))
    expected = (error_body or openai_error(status, "m"))["error"]["message"]
    error = assert_error(r, status, type_, param, code)
    assert error["message"] == expected
    # a client error would fail the same way anywhere: neither retried nor sent to the fallback
    assert [q.model for q in upstream.requests] == ["m"]


@pytest.mark.parametrize(("status", "code"), [(500, "provider_error"), (503, "provider_overloaded")])
def test_upstream_server_errors(client, upstream, status, code):
    upstream.script("m", Reply(status=status))
    r = post(client, BASE)
    error = assert_error(r, status, "api_error", None, code)
    assert error["message"] == openai_error(status)["error"]["message"]
    assert len(upstream.requests) == 1  # no retry object: no retry


@pytest.mark.parametrize(
    ("raw", "message"),
    [(b'{"error": {"message": "quota exhausted", "type": "insufficient_quota", "code": null}}', "quota exhausted"),
     (b'{"error": "model is loading"}', "model is loading")],
    ids=["openai-shape", "bare-string"],
)
def test_upstream_200_with_error_object(client, upstream, raw, message):
    """An error object where a completion was expected is a failed call, not an empty answer."""
    upstream.script("m", Reply(status=200, raw_body=raw))
    error = assert_error(post(client, BASE), 502, "api_error", None, "provider_error")
    assert error["message"] == message


def test_upstream_non_json_error_body(client, upstream):
    upstream.script("m", Reply(status=502, raw_body=b"<html>bad gateway</html>"))
    error = assert_error(post(client, BASE), 502, "api_error", None, "provider_error")
    assert "bad gateway" in error["message"]


@pytest.mark.parametrize("raw", [b"this is not json", b'{"choices": "nope"}', b"[1, 2, 3]"],
                         ids=["garbage", "wrong-shape", "array"])
def test_upstream_200_with_garbage(client, upstream, raw):
    upstream.script("m", Reply(status=200, raw_body=raw))
    error = assert_error(post(client, BASE), 502, "api_error", None, "provider_error")
    assert "emu/m" in error["message"]


def test_upstream_connection_refused(client, upstream):
    error = assert_error(post(client, req(model="dead/x")), 502, "api_error", None, "provider_error")
    assert "dead/x" in error["message"]


def test_upstream_unreachable_then_fallback(client, upstream):
    r = post(client, req(model="dead/x", fallbacks=[{"model": "emu/b"}]))
    assert r.status_code == 200, r.text
    assert r.headers["x-switchyard-model"] == "emu/b"
