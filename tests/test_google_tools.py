"""Function calling and JSON output against a Gemini-backed model, through the chat surface with
the openai SDK, over real sockets (docs/providers.md, "Google Gemini": tools and response_format)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.conftest import KEY_A, proxy_config
from tests.emulators.google_server import GoogleEmulator, Reply
from tests.emulators.openai_server import OpenAIEmulator
from tests.proxy_process import ProxyProcess

GKEY = "AIza-tools-0123456789"
MODEL = "gem/gemini-2.5-flash"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                   "additionalProperties": False}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}}}}


@pytest.fixture(scope="module")
def gemini() -> Iterator[GoogleEmulator]:
    with GoogleEmulator(api_key=GKEY) as emu:
        yield emu


@pytest.fixture(scope="module")
def proxy(emulator: OpenAIEmulator, gemini: GoogleEmulator, tmp_path_factory: pytest.TempPathFactory):
    gem = f'  gem: {{type: google, base_url: "{gemini.base_url}", api_key: "{GKEY}"}}\n'
    config = proxy_config(emulator).replace("providers:\n", "providers:\n" + gem, 1)
    process = ProxyProcess(config, tmp_path_factory.mktemp("google-tools")).start()
    yield process
    process.stop()


@pytest.fixture()
def google(gemini: GoogleEmulator) -> GoogleEmulator:
    gemini.reset()
    return gemini


@pytest.fixture()
def oai(proxy) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key=KEY_A, base_url=proxy.url + "/v1", max_retries=0) as client:
        yield client


@pytest.fixture()
def http(proxy) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=proxy.url, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30) as c:
        yield c


def stream_calls(chunks: list) -> list:
    return [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]


@pytest.mark.parametrize("stream", [False, True])
def test_tool_call_round_trip(oai, google, stream):
    messages: list[dict] = [{"role": "user", "content": "weather in Paris"}]
    if stream:
        chunks = list(oai.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER],
                                                  tool_choice="required", stream=True))
        pieces = stream_calls(chunks)
        # Gemini sends a call whole: one delta with id, name and all the arguments.
        assert len(pieces) == 1 and pieces[0].index == 0 and pieces[0].type == "function"
        call_id, name, arguments = pieces[0].id, pieces[0].function.name, pieces[0].function.arguments
        assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == \
            ["tool_calls"]
    else:
        res = oai.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER], tool_choice="required")
        assert res.choices[0].finish_reason == "tool_calls" and res.choices[0].message.content is None
        call = res.choices[0].message.tool_calls[0]
        call_id, name, arguments = call.id, call.function.name, call.function.arguments
    assert call_id and name == "get_weather" and json.loads(arguments) == {"city": "weather in Paris"}
    sent = google.requests[-1].body
    assert sent["tools"] == [{"functionDeclarations": [{
        "name": "get_weather", "description": "Weather for a city",
        "parametersJsonSchema": WEATHER["function"]["parameters"]}]}]
    assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}

    messages += [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": call_id, "content": "sunny, 21C"},
    ]
    res = oai.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER])
    assert res.choices[0].message.content == "Result of get_weather: sunny, 21C"
    assert res.choices[0].finish_reason == "stop" and not res.choices[0].message.tool_calls
    contents = google.requests[-1].body["contents"]
    assert contents[1:] == [
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "weather in Paris"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather",
                                                         "response": {"result": "sunny, 21C"}}}]},
    ]
    assert "toolConfig" not in google.requests[-1].body  # no tool_choice: Gemini's default (AUTO)


@pytest.mark.parametrize("stream", [False, True])
def test_gemini_3_gets_its_thought_signature_back_with_the_call(oai, google, stream):
    """Gemini 3 signs its function calls and refuses the next turn without the signature: it
    rides in the tool call id, which clients send back verbatim."""
    model = "gem/gemini-3-pro-preview"
    messages: list[dict] = [{"role": "user", "content": "weather in Oslo"}]
    if stream:
        chunks = list(oai.chat.completions.create(model=model, messages=messages, tools=[WEATHER],
                                                  tool_choice="required", stream=True))
        call = stream_calls(chunks)[0]
    else:
        call = oai.chat.completions.create(model=model, messages=messages, tools=[WEATHER],
                                           tool_choice="required").choices[0].message.tool_calls[0]
    signed = google.requests[-1]
    assert call.id.startswith("call_") and "~sig~" in call.id
    messages += [{"role": "assistant", "tool_calls": [{"id": call.id, "type": "function", "function": {
        "name": call.function.name, "arguments": call.function.arguments}}]},
        {"role": "tool", "tool_call_id": call.id, "content": "rain"}]
    res = oai.chat.completions.create(model=model, messages=messages, tools=[WEATHER])
    assert res.choices[0].message.content == "Result of get_weather: rain"
    part = google.requests[-1].body["contents"][1]["parts"][0]
    assert part["thoughtSignature"] == call.id.partition("~sig~")[2] and part["functionCall"]["name"] == "get_weather"
    assert signed.body["contents"] == google.requests[-1].body["contents"][:1]
    # Without the signature Gemini 3 refuses the turn: the id is what carries it.
    messages[1]["tool_calls"][0]["id"] = messages[2]["tool_call_id"] = "call_plain"
    with pytest.raises(openai.BadRequestError, match="thought_signature"):
        oai.chat.completions.create(model=model, messages=messages, tools=[WEATHER])


def test_tool_choice_maps_to_function_calling_modes(oai, google):
    res = oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "now"}],
                                      tools=[WEATHER, TIME],
                                      tool_choice={"type": "function", "function": {"name": "get_time"}})
    assert res.choices[0].message.tool_calls[0].function.name == "get_time"
    assert google.requests[-1].body["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_time"]}}

    res = oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "chat only"}],
                                      tools=[WEATHER], tool_choice="none")
    assert res.choices[0].message.content == "Echo: chat only" and res.choices[0].finish_reason == "stop"
    assert google.requests[-1].body["toolConfig"] == {"functionCallingConfig": {"mode": "NONE"}}


@pytest.mark.parametrize("stream", [False, True])
def test_parallel_calls_get_distinct_ids_and_gemini_ids_are_kept(oai, google, stream):
    google.script("gemini-2.5-flash", Reply(text="Checking.", function_calls=[
        {"name": "get_weather", "args": {"city": "Paris"}},
        {"name": "get_time", "args": {"zone": "CET"}, "id": "gem-call-7"},
        {"name": "get_weather", "args": {"city": "Rome"}}]))
    kwargs = {"model": MODEL, "messages": [{"role": "user", "content": "both"}], "tools": [WEATHER, TIME],
              "parallel_tool_calls": False}  # Dropped: Gemini has no such switch
    if stream:
        chunks = list(oai.chat.completions.create(stream=True, **kwargs))
        calls = [(p.index, p.id, p.function.name, p.function.arguments) for p in stream_calls(chunks)]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        reason = next(c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason)
    else:
        res = oai.chat.completions.create(**kwargs)
        calls = [(i, c.id, c.function.name, c.function.arguments)
                 for i, c in enumerate(res.choices[0].message.tool_calls)]
        text, reason = res.choices[0].message.content, res.choices[0].finish_reason
    assert text == "Checking." and reason == "tool_calls"
    assert [(i, n, json.loads(a)) for i, _, n, a in calls] == [
        (0, "get_weather", {"city": "Paris"}), (1, "get_time", {"zone": "CET"}), (2, "get_weather", {"city": "Rome"})]
    ids = [c[1] for c in calls]
    assert ids[1] == "gem-call-7" and len(set(ids)) == 3 and all(ids)
    assert "parallelToolCalls" not in json.dumps(google.requests[-1].body)


def test_tool_results_answer_the_calls_they_name(http, google):
    calls = [{"id": "a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
             {"id": "b", "type": "function", "function": {"name": "get_time", "arguments": ""}}]
    r = http.post("/v1/chat/completions", json={"model": MODEL, "tools": [WEATHER, TIME], "messages": [
        {"role": "user", "content": "both"}, {"role": "assistant", "content": "Let me see.", "tool_calls": calls},
        {"role": "tool", "tool_call_id": "b", "content": "12:00"},
        {"role": "tool", "tool_call_id": "a", "content": "snow"}]})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "Result of get_time: 12:00; Result of get_weather: snow"
    contents = google.requests[-1].body["contents"]
    assert contents[1]["parts"][0] == {"text": "Let me see."}
    assert contents[1]["parts"][2] == {"functionCall": {"name": "get_time", "args": {}}}
    assert [p["functionResponse"]["name"] for p in contents[2]["parts"]] == ["get_time", "get_weather"]


@pytest.mark.parametrize(("messages", "param"), [
    ([{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "nope", "content": "r"}],
     "messages[1].tool_call_id"),
    ([{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [
        {"id": "a", "type": "function", "function": {"name": "get_weather", "arguments": "[1]"}}]}],
     "messages[1].tool_calls[0].function.arguments"),
])
def test_a_tool_turn_gemini_cannot_take_is_a_400_naming_it(http, google, messages, param):
    before = len(google.requests)
    r = http.post("/v1/chat/completions", json={"model": MODEL, "tools": [WEATHER], "messages": messages})
    assert r.status_code == 400 and r.json()["error"]["param"] == param
    assert len(google.requests) == before


def test_response_format_json_object(oai, google):
    res = oai.chat.completions.create(model=MODEL, response_format={"type": "json_object"},
                                      messages=[{"role": "user", "content": "answer in json please"}])
    assert json.loads(res.choices[0].message.content) == {"echo": "Echo: answer in json please"}
    config = google.requests[-1].body["generationConfig"]
    assert config == {"responseMimeType": "application/json"}


@pytest.mark.parametrize("stream", [False, True])
def test_response_format_json_schema(oai, google, stream):
    schema = {"type": "object", "properties": {"mood": {"type": "string", "enum": ["calm", "busy"]},
                                               "score": {"type": "integer"}},
              "required": ["mood", "score"], "additionalProperties": False}
    kwargs = {"model": MODEL, "messages": [{"role": "user", "content": "rate it"}],
              "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": schema,
                                                                         "strict": True}}}
    if stream:
        chunks = list(oai.chat.completions.create(stream=True, **kwargs))
        content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        content = oai.chat.completions.create(**kwargs).choices[0].message.content
    assert json.loads(content) == {"mood": "calm", "score": 1}
    config = google.requests[-1].body["generationConfig"]
    assert config == {"responseMimeType": "application/json", "responseJsonSchema": schema}
