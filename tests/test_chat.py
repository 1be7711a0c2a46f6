"""The chat surfaces (issue 10) over real sockets: orq's `/v2/router/chat/completions` and
OpenAI's `/v1/*` paths, through both SDKs, against OpenAI-, and Gemini-backed models."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import httpx
import openai
import pytest
from orq_ai_sdk import Orq

from tests.conftest import KEY_A, KEY_B, UPSTREAM_KEY, start_proxy
from tests.emulators.google_server import GoogleEmulator
from tests.emulators.openai_server import OpenAIEmulator

GOOGLE_KEY = "google-upstream-key-0123456789"


@pytest.fixture(scope="module")
def google() -> Iterator[GoogleEmulator]:
    with GoogleEmulator(api_key=GOOGLE_KEY) as emu:
        yield emu


@pytest.fixture(scope="module")
def chat_proxy(emulator: OpenAIEmulator, google: GoogleEmulator, tmp_path_factory: pytest.TempPathFactory):
    providers = f"""
providers:
  emu: {{type: openai, base_url: "{emulator.base_url}", api_key: "{UPSTREAM_KEY}", models: [allowed-a, other]}}
  emu2: {{type: openai, base_url: "{emulator.base_url}", api_key: "{UPSTREAM_KEY}"}}
  legacy: {{type: openai, base_url: "{emulator.base_url}", api_key: "{UPSTREAM_KEY}", chat_endpoint: false}}
  gem: {{type: google, base_url: "{google.origin}", api_key: "{GOOGLE_KEY}", models: [gemini-2.5-flash]}}
  dead: {{type: openai, base_url: "http://127.0.0.1:9/v1"}}
"""
    proxy = start_proxy(emulator, tmp_path_factory.mktemp("chat"), extra=providers)
    yield proxy
    proxy.stop()


@pytest.fixture()
def oai(chat_proxy) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key=KEY_A, base_url=chat_proxy.url + "/v1", max_retries=0) as client:
        yield client


@pytest.fixture()
def http(chat_proxy) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=chat_proxy.url, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30) as c:
        yield c


def test_openai_sdk_chat(oai, upstream):
    res = oai.chat.completions.create(model="emu/gpt-4o", messages=[
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}])
    assert res.object == "chat.completion"
    assert res.choices[0].message.content == "Echo: hello there"
    assert res.choices[0].message.role == "assistant" and res.choices[0].finish_reason == "stop"
    assert res.usage is not None and res.usage.total_tokens > 0
    sent = upstream.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.body["messages"][0] == {"role": "system", "content": "Be brief."}


def test_openai_sdk_chat_stream_with_usage(oai, upstream):
    chunks = list(oai.chat.completions.create(
        model="emu/gpt-4o", messages=[{"role": "user", "content": "one two three"}], stream=True,
        stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: one two three"
    finished = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finished == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


def test_stream_without_include_usage_has_no_usage_chunk(oai, upstream):
    chunks = list(oai.chat.completions.create(model="emu/gpt-4o", messages=[{"role": "user", "content": "hi"}],
                                              stream=True))
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


@pytest.mark.parametrize("stream", [False, True])
def test_tool_call_round_trip(oai, upstream, stream):
    messages: list[dict] = [{"role": "user", "content": "weather in Paris"}]
    if stream:
        chunks = list(oai.chat.completions.create(model="emu/gpt-4o", messages=messages, tools=[WEATHER],
                                                  tool_choice="required", stream=True))
        pieces = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
        call_id = next(p.id for p in pieces if p.id)
        name = next(p.function.name for p in pieces if p.function and p.function.name)
        arguments = "".join(p.function.arguments or "" for p in pieces if p.function)
        assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == \
            ["tool_calls"]
    else:
        res = oai.chat.completions.create(model="emu/gpt-4o", messages=messages, tools=[WEATHER],
                                          tool_choice="required")
        call = res.choices[0].message.tool_calls[0]
        assert res.choices[0].finish_reason == "tool_calls"
        call_id, name, arguments = call.id, call.function.name, call.function.arguments
    assert name == "get_weather" and "city" in json.loads(arguments)
    assert upstream.requests[-1].body["tools"][0]["function"]["name"] == "get_weather"
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": call_id, "content": "sunny, 21C"},
    ]
    res = oai.chat.completions.create(model="emu/gpt-4o", messages=messages, tools=[WEATHER])
    assert "sunny, 21C" in (res.choices[0].message.content or "")
    sent = upstream.requests[-1].body["messages"]
    assert sent[1]["tool_calls"][0]["id"] == call_id and sent[2] == {
        "role": "tool", "content": "sunny, 21C", "tool_call_id": call_id}


def test_response_format_json_object(oai, upstream):
    res = oai.chat.completions.create(model="emu/gpt-4o", response_format={"type": "json_object"},
                                      messages=[{"role": "user", "content": "answer in json please"}])
    assert json.loads(res.choices[0].message.content) == {"echo": "Echo: answer in json please"}
    assert upstream.requests[-1].body["response_format"] == {"type": "json_object"}


def test_orq_sdk_chat_router(chat_proxy, upstream):
    with Orq(api_key=KEY_A, server_url=chat_proxy.url) as orq:
        res = orq.router.chat.completions.create(model="emu/gpt-4o",
                                                 messages=[{"role": "user", "content": "hi orq"}])
    assert res.choices[0].message.content == "Echo: hi orq"
    assert upstream.requests[-1].path == "/v1/chat/completions"


def test_fallback_across_providers_in_a_chat(http, upstream):
    r = http.post("/v2/router/chat/completions", json={
        "model": "dead/x", "fallbacks": [{"model": "gem/gemini-2.5-flash"}],
        "messages": [{"role": "user", "content": "hi gemini"}]})
    assert r.status_code == 200, r.text
    assert r.headers["x-switchyard-model"] == "gem/gemini-2.5-flash"
    assert r.json()["choices"][0]["message"]["content"] == "Echo: hi gemini"


def test_gemini_backed_chat_stream(http, google):
    with http.stream("POST", "/v1/chat/completions", json={
            "model": "gem/gemini-2.5-flash", "stream": True,
            "messages": [{"role": "system", "content": "terse"}, {"role": "user", "content": "a b c"}]}) as r:
        body = r.read().decode()
    assert r.status_code == 200
    events = [json.loads(line[6:]) for line in body.split("\n\n") if line.startswith("data: {")]
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"]) == "Echo: a b c"
    assert body.rstrip().endswith("data: [DONE]")
    sent = google.requests[-1].body
    assert sent["systemInstruction"]["parts"][0]["text"] == "terse"


def test_cache_hit_on_a_repeated_chat_and_never_shared_with_completions(http, upstream):
    salt = uuid.uuid4().hex
    body = {"model": "emu/gpt-4o", "messages": [{"role": "user", "content": salt}],
            "cache": {"type": "exact_match"}}
    first = http.post("/v2/router/chat/completions", json=body)
    second = http.post("/v2/router/chat/completions", json=body)
    assert first.headers["x-switchyard-cache"] == "miss" and second.headers["x-switchyard-cache"] == "hit"
    assert second.json()["choices"] == first.json()["choices"]
    completion = http.post("/v2/router/completions", json={"model": "emu/gpt-4o", "prompt": salt,
                                                             "cache": {"type": "exact_match"}})
    assert completion.headers["x-switchyard-cache"] == "miss"


def test_bad_message_shape_names_the_path(http):
    r = http.post("/v1/chat/completions", json={"model": "emu/m", "messages": [
        {"role": "system", "content": "s"}, {"role": "user", "content": "u"},
        {"role": "user", "content": [{"type": "hologram", "data": "x"}]}]})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "messages[2].content[0].type"


def test_missing_messages_is_a_400(http):
    r = http.post("/v2/router/chat/completions", json={"model": "emu/m"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"


def test_fields_outside_the_schema_reach_an_openai_compatible_upstream(http, upstream):
    r = http.post("/v1/chat/completions", json={"model": "emu/gpt-4o", "frobnicate": 1,
                                                "messages": [{"role": "user", "content": "hi"}]})
    # The emulator is as strict as OpenAI: the field arrived, and OpenAI's own 400 came back.
    assert r.status_code == 400 and "frobnicate" in r.json()["error"]["message"]
    assert upstream.requests[-1].body["frobnicate"] == 1


def test_a_provider_that_cannot_take_a_field_refuses_it_by_name(http, google):
    before = len(google.requests)
    r = http.post("/v1/chat/completions", json={"model": "gem/gemini-2.5-flash", "logprobs": True,
                                                "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "logprobs"
    assert len(google.requests) == before


def test_chat_on_a_legacy_only_server(http, upstream):
    r = http.post("/v1/chat/completions", json={"model": "legacy/m", "messages": [
        {"role": "system", "content": "be nice"}, {"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    sent = upstream.requests[-1]
    assert sent.path == "/v1/completions"
    assert sent.body["prompt"] == "system: be nice\n\nuser: hi\n\nassistant:"
    assert r.json()["choices"][0]["message"]["content"] == "Hello from the emulator"


def test_openai_sdk_completions_under_v1(oai, upstream):
    res = oai.completions.create(model="emu/m", prompt="Say hi", max_tokens=5)
    assert res.choices[0].text == "Hello from the emulator"
    assert upstream.requests[-1].path == "/v1/completions"


def test_models_listed_per_key(chat_proxy):
    def ids(key: str) -> set[str]:
        with openai.OpenAI(api_key=key, base_url=chat_proxy.url + "/v1", max_retries=0) as client:
            return {m.id for m in client.models.list()}

    everything = ids(KEY_A)
    assert {"emu/allowed-a", "emu/other", "gem/gemini-2.5-flash", "fast"} <= everything
    assert ids(KEY_B) == {"emu/allowed-a"}  # team-b may use only emu/allowed-*
    r = httpx.get(chat_proxy.url + "/v2/router/models")
    assert r.status_code == 401


@pytest.mark.parametrize(("effort", "budget"), [("low", 2048), ("high", 16384), ("none", 0)])
def test_reasoning_effort_maps_to_a_gemini_thinking_budget(http, google, effort, budget):
    r = http.post("/v1/chat/completions", json={"model": "gem/gemini-2.5-flash", "reasoning_effort": effort,
                                                "messages": [{"role": "user", "content": "think"}]})
    assert r.status_code == 200, r.text
    config = google.requests[-1].body["generationConfig"]["thinkingConfig"]
    assert config["thinkingBudget"] == budget
    message = r.json()["choices"][0]["message"]
    assert message["content"] == "Echo: think"
    if budget:
        assert message.get("reasoning"), "thought text travels as reasoning, never as content"
        assert r.json()["usage"]["completion_tokens_details"]["reasoning_tokens"] > 0
