"""The official clients, as they come from PyPI, against the running proxy over a real socket."""

from __future__ import annotations

import uuid

import httpx
import openai
import pytest
from orq_ai_sdk import Orq, models

from tests.conftest import KEY_A, KEY_B
from tests.emulators.openai_server import Reply, openai_error

TEXT = "héllo wörld ✓ 日本"


# -- orq.ai's SDK ----------------------------------------------------------------------------------------
@pytest.fixture()
def orq(proxy):
    with Orq(api_key=KEY_A, server_url=proxy.url) as client:
        yield client


def test_orq_non_stream(orq, upstream):
    upstream.script("m", Reply(text=TEXT, prompt_tokens=2, completion_tokens=3))
    res = orq.router.completions.create(model="emu/m", prompt="Say hi", max_tokens=5)
    assert res.choices[0].text == TEXT
    assert res.choices[0].finish_reason == "stop"
    assert res.model == "m" and res.object == "text_completion"
    assert res.usage is not None and res.usage.total_tokens == 5
    sent = upstream.requests[-1].body
    assert sent["model"] == "m" and sent["prompt"] == "Say hi" and sent["max_tokens"] == 5


def test_orq_stream(orq, upstream):
    upstream.script("m", Reply(text=TEXT, chunks=5, finish_reason="length"))
    events = list(orq.router.completions.create(model="emu/m", prompt="Say hi", max_tokens=5, stream=True))
    assert len(events) == 5
    chunks = [event.data for event in events]  # the SDK wraps each chunk as `.data`
    assert all(chunk is not None for chunk in chunks)
    assert "".join(c.choices[0].text for c in chunks) == TEXT
    assert chunks[-1].choices[0].finish_reason == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 7


def test_orq_routing_fields(proxy, upstream):
    sent: list[bytes] = []
    http = httpx.Client(event_hooks={"request": [lambda request: sent.append(request.read())]})
    orq = Orq(api_key=KEY_A, server_url=proxy.url, client=http)
    upstream.script("m", Reply(status=500), Reply(status=500))
    res = orq.router.completions.create(
        model="emu/m",
        prompt=f"Say hi {uuid.uuid4().hex}",  # it asks for the cache: never a hit from elsewhere
        max_tokens=5,
        retry={"count": 1, "on_codes": [500]},  # the SDK sends these as floats: 1.0, [500.0]
        fallbacks=[{"model": "emu2/b"}],
        timeout={"call_timeout": 30000},
        cache={"type": "exact_match", "ttl": 60},
        orq={"identity": {"id": "identity_1", "email": "jane@example.com"},
             "thread": {"id": "thread_1", "tags": ["sdk"]}, "name": "sdk-trace"},
        name="sdk-trace",
    )
    http.close()
    assert res.choices[0].text == "Hello from the emulator"
    assert [q.model for q in upstream.requests] == ["m", "m", "b"]
    # what makes this a test of the integral-float leniency: the SDK sends floats for integers
    assert b'"retry":{"count":1.0,"on_codes":[500.0]}' in sent[0]


def test_orq_fields_inside_orq_block(orq, upstream):
    upstream.script("m", Reply(status=503))
    res = orq.router.completions.create(
        model="emu/m", prompt="Say hi",
        orq={"retry": {"count": 1, "on_codes": [503]}, "fallbacks": [{"model": "emu2/c"}],
             "timeout": {"call_timeout": 30000}},
    )
    assert res.choices[0].text == "Hello from the emulator"
    assert [q.model for q in upstream.requests] == ["m", "m", "c"]


def test_orq_wrong_key(proxy, upstream):
    with Orq(api_key="sk-wrong", server_url=proxy.url) as client, pytest.raises(models.APIErrorResponse) as caught:
        client.router.completions.create(model="emu/m", prompt="x")
    err = caught.value
    assert err.status_code == 401
    assert err.data.error.code == "invalid_api_key"
    assert err.data.error.type == "authentication_error"
    assert "API key" in err.message and err.message == err.data.error.message
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("fields", "param"),
    [({"retry": {"count": 9}}, "retry.count"), ({"model": "nope/x"}, "model")],
    ids=["retry.count-9", "unknown-provider"],
)
def test_orq_bad_request(orq, upstream, fields, param):
    with pytest.raises(models.OrqError) as caught:
        orq.router.completions.create(**{"model": "emu/m", "prompt": "x", **fields})
    err = caught.value
    assert err.status_code == 400
    assert f'"param":"{param}"' in err.body
    assert upstream.requests == []


def test_orq_upstream_error_status(orq, upstream):
    upstream.script("m", Reply(status=503))
    with pytest.raises(models.OrqError) as caught:
        orq.router.completions.create(model="emu/m", prompt="x")
    assert caught.value.status_code == 503


# -- OpenAI's SDK ----------------------------------------------------------------------------------------
@pytest.fixture()
def oai(proxy):
    with openai.OpenAI(api_key=KEY_A, base_url=proxy.url + "/v2/router", max_retries=0) as client:
        yield client


def test_openai_non_stream(oai, upstream):
    upstream.script("m", Reply(text=TEXT))
    res = oai.completions.create(model="emu/m", prompt="hi", max_tokens=5, n=2, stop=["\n"], temperature=0.5)
    assert [c.text for c in res.choices] == [TEXT, TEXT]
    assert [c.index for c in res.choices] == [0, 1]
    assert res.usage is not None and res.usage.total_tokens == 12
    sent = upstream.requests[-1].body
    assert (sent["max_tokens"], sent["n"], sent["stop"], sent["temperature"]) == (5, 2, ["\n"], 0.5)


def test_openai_raw_response_headers(oai, upstream):
    raw = oai.completions.with_raw_response.create(model="emu/m", prompt="hi")
    assert raw.headers["x-switchyard-model"] == "emu/m"
    assert raw.parse().choices[0].text == "Hello from the emulator"


def test_openai_stream(oai, upstream):
    upstream.script("m", Reply(text=TEXT, chunks=4, finish_reason="length", prompt_tokens=1, completion_tokens=2))
    chunks = list(oai.completions.create(model="emu/m", prompt="hi", stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == TEXT
    assert chunks[-1].choices[0].finish_reason == "length"
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (1, 2)
    assert upstream.requests[-1].body["stream_options"] == {"include_usage": True}


def test_openai_stream_n2(oai, upstream):
    upstream.script("m", Reply(text=TEXT, chunks=3))
    texts: dict[int, str] = {}
    for chunk in oai.completions.create(model="emu/m", prompt="hi", stream=True, n=2):
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + choice.text
    assert texts == {0: TEXT, 1: TEXT}


def test_openai_wrong_key(proxy, upstream):
    with (openai.OpenAI(api_key="sk-wrong", base_url=proxy.url + "/v2/router", max_retries=0) as client,
          pytest.raises(openai.AuthenticationError) as caught):
        client.completions.create(model="emu/m", prompt="hi")
    err = caught.value
    assert err.status_code == 401
    assert err.code == "invalid_api_key"
    assert "API key" in err.message
    assert err.response.headers["x-request-id"]


def test_openai_bad_request(oai, upstream):
    with pytest.raises(openai.BadRequestError) as caught:
        oai.completions.create(model="emu/m", prompt="hi", extra_body={"retry": {"count": 9}})
    err = caught.value
    assert err.status_code == 400
    assert err.body["param"] == "retry.count"
    assert err.param == "retry.count"
    assert err.code == "invalid_request_body"
    assert err.type == "invalid_request_error"


def test_openai_unknown_model(oai, upstream):
    with pytest.raises(openai.BadRequestError) as caught:
        oai.completions.create(model="nope/x", prompt="hi")
    assert caught.value.body["param"] == "model"
    assert caught.value.code == "model_not_found"


def test_openai_permission_denied(proxy, upstream):
    with (openai.OpenAI(api_key=KEY_B, base_url=proxy.url + "/v2/router", max_retries=0) as client,
          pytest.raises(openai.PermissionDeniedError) as caught):
        client.completions.create(model="emu/other", prompt="hi")
    assert caught.value.code == "insufficient_scope"


def test_openai_upstream_server_error(oai, upstream):
    upstream.script("m", Reply(status=500))
    with pytest.raises(openai.InternalServerError) as caught:
        oai.completions.create(model="emu/m", prompt="hi")
    assert caught.value.status_code == 500
    assert caught.value.type == "api_error"


@pytest.mark.parametrize(
    "reply",
    [Reply(chunks=4, cut_after_chunks=2),
     Reply(chunks=4, error_event_after_chunks=2, error_body=openai_error(500, message="boom mid-stream"))],
    ids=["cut", "error-event"],
)
def test_openai_mid_stream_error(oai, upstream, reply):
    upstream.script("m", reply)
    got: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in oai.completions.create(model="emu/m", prompt="hi", stream=True):
            got.extend(c.text for c in chunk.choices)
    assert len(got) == 2, "the chunks before the failure arrive"
    assert not isinstance(caught.value, openai.APIConnectionError), "the error is ours, in-band"
    assert caught.value.type == "api_error"
    if reply.error_event_after_chunks is not None:
        assert caught.value.message == "boom mid-stream"


# -- the README's client examples (issue 9, item 11) -----------------------------------------------------
def test_readme_clients_do_not_multiply_the_proxys_retries(proxy, upstream, monkeypatch):
    """The SDKs built as the README builds them add no retries of their own: a request the proxy
    retries once reaches the provider twice, not six times."""
    from tests.proxy_process import REPO

    readme = (REPO / "README.md").read_text()
    block = readme.split("With the official SDKs", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.setenv("SWITCHYARD_API_KEY", KEY_A)
    upstream.script("llama-3-8b", Reply())  # what the example's own calls get
    namespace: dict[str, object] = {}
    code = block.replace("http://127.0.0.1:8080", proxy.url).replace("local/", "emu/").replace("openai/", "emu2/")
    exec(code, namespace)  # noqa: S102
    for call in (
        lambda: namespace["orq"].router.completions.create(  # type: ignore[attr-defined]
            model="emu/busy", prompt="x", retry={"count": 1, "on_codes": [429]}),
        lambda: namespace["client"].completions.create(  # type: ignore[attr-defined]
            model="emu/busy", prompt="x", extra_body={"retry": {"count": 1, "on_codes": [429]}}),
    ):
        upstream.reset()
        upstream.script("busy", *[Reply(status=429)] * 12)
        with pytest.raises(Exception):  # noqa: B017 - each SDK has its own error class
            call()
        assert len(upstream.requests) == 2, [r.body.get("model") for r in upstream.requests]
