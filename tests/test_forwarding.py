"""What reaches the upstream, and what comes back to the client, for a plain completion."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.conftest import KEY_A, UPSTREAM_KEY, start_proxy
from tests.emulators.openai_server import Reply

URL = "/v2/router/completions"
BASE: dict[str, Any] = {"model": "emu/m", "prompt": "hi"}
GENERATION = ("echo", "frequency_penalty", "max_tokens", "presence_penalty", "seed", "stop", "temperature",
              "top_p", "n", "user")


def send(client, upstream, **fields: Any) -> tuple[dict, dict]:
    r = client.post(URL, json={**BASE, **fields})
    assert r.status_code == 200, r.text
    assert len(upstream.requests) == 1
    return r.json(), upstream.requests[-1].body


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("echo", True),
        ("echo", False),
        ("frequency_penalty", 1.5),
        ("frequency_penalty", -0.25),
        ("max_tokens", 7),
        ("max_tokens", 0),
        ("presence_penalty", -2),
        ("seed", 123456789),
        ("seed", -5),
        ("stop", "\n"),
        ("stop", ["END", "###"]),
        ("temperature", 0.2),
        ("temperature", 0),
        ("top_p", 0.95),
        ("n", 3),
        ("user", "user-42"),
    ],
    ids=lambda v: repr(v) if not isinstance(v, str) else v,
)
def test_generation_parameter_forwarded(client, upstream, field, value):
    _, sent = send(client, upstream, **{field: value})
    assert sent[field] == value
    if isinstance(value, bool):
        assert sent[field] is value
    elif isinstance(value, int) and field in ("max_tokens", "seed", "n"):
        assert type(sent[field]) is int, "integers stay integers"
    elif isinstance(value, float | int):
        assert isinstance(sent[field], int | float) and not isinstance(sent[field], bool)
    for other in GENERATION:
        if other != field:
            assert other not in sent, f"{other} was not set by the client"


def test_all_parameters_together(client, upstream):
    params = {"echo": True, "frequency_penalty": 0.5, "max_tokens": 12, "presence_penalty": -0.5, "seed": 3,
              "stop": ["x"], "temperature": 1.3, "top_p": 0.5, "n": 2, "user": "u"}
    _, sent = send(client, upstream, **params)
    assert {k: sent[k] for k in params} == params
    assert type(sent["max_tokens"]) is int and type(sent["seed"]) is int and type(sent["n"]) is int


def test_unset_parameters_not_sent(client, upstream):
    _, sent = send(client, upstream)
    assert sent == {"model": "m", "prompt": "hi"}


def test_routing_fields_not_sent(client, upstream):
    _, sent = send(client, upstream, name="trace", retry={"count": 1}, timeout={"call_timeout": 5000},
                   fallbacks=[{"model": "emu/b"}], thinking={"type": "disabled"},
                   orq={"identity": {"id": "i"}, "thread": {"id": "t"}})
    assert sent == {"model": "m", "prompt": "hi"}


@pytest.mark.parametrize("thinking", [{"type": "adaptive"}, {"type": "enabled", "budget_tokens": 1024}])
def test_thinking_refused_by_a_provider_without_it(client, upstream, thinking):
    """Legacy completions have no thinking: asking for it is a 400 before any upstream call,
    never a silently different answer (docs/providers.md)."""
    r = client.post(URL, json={**BASE, "thinking": thinking, "max_tokens": 2000})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == "thinking" and error["code"] == "unsupported_parameter"
    assert "'emu'" in error["message"]
    assert upstream.requests == []


def test_thinking_refused_when_only_a_fallback_lacks_it(client, upstream):
    r = client.post(URL, json={**BASE, "thinking": {"type": "adaptive"}, "fallbacks": [{"model": "emu2/x"}]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "thinking"
    assert upstream.requests == []


def test_integral_float_params_sent_as_ints(client, upstream):
    _, sent = send(client, upstream, max_tokens=5.0, n=2.0, seed=9.0)
    assert (sent["max_tokens"], sent["n"], sent["seed"]) == (5, 2, 9)
    assert all(type(sent[k]) is int for k in ("max_tokens", "n", "seed"))


@pytest.mark.parametrize(
    ("model", "upstream_model"),
    [("emu/m", "m"), ("emu/org/model-x", "org/model-x"), ("emu/a/b/c:latest", "a/b/c:latest"),
     ("fast", "fast-model"), ("emu2/other", "other")],
    ids=["plain", "slash-in-model", "many-slashes", "alias", "second-provider"],
)
def test_upstream_model_id(client, upstream, model, upstream_model):
    r = client.post(URL, json={**BASE, "model": model})
    assert r.status_code == 200, r.text
    assert upstream.requests[-1].body["model"] == upstream_model
    assert upstream.requests[-1].path == "/v1/completions"
    served = model if model != "fast" else "emu/fast-model"
    assert r.headers["x-switchyard-model"] == served


def test_provider_key_sent_client_key_not(client, upstream):
    client.post(URL, json=BASE, headers={"X-Api-Key": KEY_A})
    headers = upstream.requests[-1].headers
    assert headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert KEY_A not in str(headers)
    assert KEY_A not in str(upstream.requests[-1].body)


def test_provider_without_key_sends_no_authorization(client, upstream, emulator, tmp_path):
    extra = f'providers:\n  emu: {{type: openai, base_url: "{emulator.base_url}"}}\n'
    proxy = start_proxy(emulator, tmp_path, extra=extra)  # a second `providers:` replaces the first
    try:
        r = httpx.post(proxy.url + URL, json=BASE, headers={"Authorization": f"Bearer {KEY_A}"})
        # The emulator wants the upstream key: without one the provider answers 401, which is
        # the proxy's credentials failing, not the client's: a 502 naming the provider.
        assert r.status_code == 502
        error = r.json()["error"]
        assert error["code"] == "provider_error" and "emu/m" in error["message"]
        assert "credentials" in error["message"]
        assert "authorization" not in upstream.requests[-1].headers
    finally:
        proxy.stop()


def test_stream_requests_usage(client, upstream):
    with client.stream("POST", URL, json={**BASE, "stream": True}) as r:
        assert r.status_code == 200
        r.read()
    sent = upstream.requests[-1].body
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}


def test_non_stream_asks_no_stream(client, upstream):
    _, sent = send(client, upstream)
    assert "stream_options" not in sent and sent.get("stream", False) is False


def test_response_body(client, upstream):
    upstream.script("m", Reply(text="The answer.", finish_reason="length", prompt_tokens=3, completion_tokens=4))
    before = int(time.time()) - 5
    body, _ = send(client, upstream)
    assert body["id"].startswith("cmpl-")
    assert body["object"] == "text_completion"
    assert isinstance(body["created"], int) and before <= body["created"] <= time.time() + 5
    assert body["model"] == "m"
    assert body["choices"] == [{"text": "The answer.", "index": 0, "finish_reason": "length"}]
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert body["system_fingerprint"] == "fp_emulator"


def test_n_choices(client, upstream):
    body, _ = send(client, upstream, n=3)
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert all(c["text"] == "Hello from the emulator" and c["finish_reason"] == "stop" for c in body["choices"])


def test_echo(client, upstream):
    body, _ = send(client, upstream, echo=True, prompt="Say: ")
    assert body["choices"][0]["text"] == "Say: Hello from the emulator"


def test_list_prompt_choices(client, upstream):
    body, sent = send(client, upstream, prompt=["a", "b"], n=2, echo=True)
    assert sent["prompt"] == ["a", "b"]
    assert [(c["index"], c["text"]) for c in body["choices"]] == [
        (0, "aHello from the emulator"), (1, "aHello from the emulator"),
        (2, "bHello from the emulator"), (3, "bHello from the emulator"),
    ]


def test_non_enum_finish_reason_mapped(client, upstream):
    upstream.script("m", Reply(finish_reason="eos"))  # llama.cpp's word; the spec has four
    body, _ = send(client, upstream)
    assert body["choices"][0]["finish_reason"] == "stop"


def test_response_headers(client, upstream):
    r = client.post(URL, json=BASE)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["x-request-id"]
    assert r.headers["x-switchyard-model"] == "emu/m"
    assert r.headers["x-switchyard-attempts"] == "1"
    overhead = float(r.headers["x-switchyard-overhead-ms"])
    assert 0 <= overhead < 1000


def test_overhead_excludes_upstream_time(client, upstream):
    upstream.script("m", Reply(delay_s=0.3))
    r = client.post(URL, json=BASE)
    assert r.status_code == 200
    assert r.elapsed.total_seconds() >= 0.3
    assert 0 <= float(r.headers["x-switchyard-overhead-ms"]) < 250


def test_attempts_header_counts_retries_and_fallbacks(client, upstream):
    upstream.script("m", Reply(status=500), Reply(status=500))
    r = client.post(URL, json={**BASE, "retry": {"count": 1, "on_codes": [500]}, "fallbacks": [{"model": "emu2/b"}]})
    assert r.status_code == 200, r.text
    assert r.headers["x-switchyard-attempts"] == "3"
    assert r.headers["x-switchyard-model"] == "emu2/b"
    assert [q.model for q in upstream.requests] == ["m", "m", "b"]
