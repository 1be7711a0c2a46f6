"""The OpenAI emulator's ``/v1/chat/completions``: plain HTTP and the official openai SDK
against it, so the wire format the proxy's tests rely on is the one real clients parse."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.emulators.base import parse_sse
from tests.emulators.openai_server import OpenAIEmulator, Reply

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
FN = {"name": "f", "arguments": "{}"}
CALLED = {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": FN}]}
KEYS = ["id", "object", "created", "model", "service_tier", "system_fingerprint", "choices", "usage"]


@pytest.fixture
def emu() -> Iterator[OpenAIEmulator]:
    with OpenAIEmulator() as e:
        yield e


@pytest.fixture
def client(emu: OpenAIEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.base_url, timeout=5.0) as c:
        yield c


@pytest.fixture
def sdk(emu: OpenAIEmulator) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=emu.base_url, api_key="sk-test", max_retries=0, timeout=5.0) as c:
        yield c


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def chat(client: httpx.Client, **body: Any) -> httpx.Response:
    return client.post("/chat/completions", json={"model": "m", **body})


def stream(client: httpx.Client, **body: Any) -> tuple[list[dict], list[str]]:
    """(decoded chunks, raw data lines) of a streamed chat request."""
    with client.stream("POST", "/chat/completions", json={"model": "m", "stream": True, **body}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        data = [d for _, d in parse_sse(r.read())]
    assert data[-1] == "[DONE]"
    return [json.loads(d) for d in data[:-1]], data


def test_non_stream_shape_and_derived_answer(client: httpx.Client) -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "héllo "}, {"type": "text", "text": "wörld"}]},
    ]
    r = chat(client, messages=messages)
    assert r.status_code == 200
    assert r.headers["x-request-id"].startswith("req_")
    body = r.json()
    assert list(body) == KEYS
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert body["model"] == "m"
    (choice,) = body["choices"]
    message = {"role": "assistant", "content": "Echo: héllo wörld", "refusal": None, "annotations": []}
    assert choice == {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
    # prompt: 2 + 2 words, 3 per message; completion: 3 words
    assert body["usage"] == {
        "prompt_tokens": 10,
        "completion_tokens": 3,
        "total_tokens": 13,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    assert "héllo wörld".encode() in r.content  # raw UTF-8


def test_sdk_non_stream(emu: OpenAIEmulator, sdk: openai.OpenAI) -> None:
    emu.script("gpt-x", Reply(text="scripted answer"))
    out = sdk.chat.completions.create(model="gpt-x", messages=user("hi"), n=2, user="u1", metadata={"k": "v"})
    assert [c.message.content for c in out.choices] == ["scripted answer"] * 2
    assert [c.index for c in out.choices] == [0, 1]
    assert out.choices[0].finish_reason == "stop"
    assert out.usage is not None and out.usage.completion_tokens == 4  # 2 words x n=2
    assert out.usage.completion_tokens_details is not None
    assert out.usage.completion_tokens_details.reasoning_tokens == 0
    (rec,) = emu.requests
    assert (rec.path, rec.model, rec.body["user"]) == ("/v1/chat/completions", "gpt-x", "u1")


def test_sdk_stream_with_usage(sdk: openai.OpenAI, client: httpx.Client) -> None:
    chunks = list(
        sdk.chat.completions.create(
            model="m",
            messages=user("one two three four five"),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    first, *middle, finish, last = chunks
    assert first.choices[0].delta.role == "assistant"
    assert first.choices[0].delta.content == ""
    assert "".join(c.choices[0].delta.content or "" for c in middle) == "Echo: one two three four five"
    assert len(middle) == Reply.chunks
    assert finish.choices[0].finish_reason == "stop"
    assert all(c.choices[0].finish_reason is None for c in [first, *middle])
    assert all(c.usage is None for c in chunks[:-1])
    assert last.choices == []
    assert last.usage is not None and last.usage.completion_tokens == 6
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1
    # On the wire: usage:null is sent on every other chunk, and none without include_usage.
    _, data = stream(client, messages=user("x"), stream_options={"include_usage": True})
    assert all('"usage":null' in d for d in data[:-2])
    plain, _ = stream(client, messages=user("x"))
    assert all("usage" not in c for c in plain)
    assert plain[-1]["choices"] == [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]


def test_sdk_tool_round_trip(emu: OpenAIEmulator, sdk: openai.OpenAI) -> None:
    call = {"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_1"}
    emu.script("m", Reply(tool_calls=[call]), Reply())
    messages: list[Any] = user("weather in Paris?")
    out = sdk.chat.completions.create(model="m", messages=messages, tools=[WEATHER], tool_choice="auto")
    choice = out.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (tc,) = choice.message.tool_calls or []
    assert (tc.id, tc.type, tc.function.name) == ("call_1", "function", "get_weather")
    assert json.loads(tc.function.arguments) == {"city": "Paris"}
    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": "call_1", "content": "sunny"})
    out = sdk.chat.completions.create(model="m", messages=messages, tools=[WEATHER])
    assert out.choices[0].message.content == "Result of get_weather: sunny"
    assert out.choices[0].finish_reason == "stop"


def test_sdk_tool_call_stream_deltas(emu: OpenAIEmulator, sdk: openai.OpenAI) -> None:
    calls = [{"name": "get_weather", "arguments": {"city": "Rome", "days": 3}}, {"name": "get_time", "arguments": {}}]
    emu.script("m", Reply(tool_calls=calls))
    chunks = list(
        sdk.chat.completions.create(model="m", messages=user("go"), tools=[WEATHER, TIME], stream=True)
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content is None
    assembled: dict[int, dict] = {}
    for c in chunks:
        for d in c.choices[0].delta.tool_calls or []:
            if d.id is not None:  # the opening delta of a call
                assert d.type == "function" and d.function is not None and d.function.arguments == ""
                assembled[d.index] = {"id": d.id, "name": d.function.name, "args": ""}
            else:
                assert d.function is not None and d.function.name is None
                assembled[d.index]["args"] += d.function.arguments or ""
    assert [(a["name"], json.loads(a["args"])) for a in assembled.values()] == [
        ("get_weather", {"city": "Rome", "days": 3}),
        ("get_time", {}),
    ]
    assert all(a["id"].startswith("call_") for a in assembled.values())
    arg_deltas = [c for c in chunks if c.choices[0].delta.tool_calls and c.choices[0].delta.tool_calls[0].id is None]
    assert len(arg_deltas) > 2  # arguments arrive in pieces
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_tool_choice_forces_none_suppresses_parallel_limits(emu: OpenAIEmulator, client: httpx.Client) -> None:
    msg = user("Oslo")
    forced = chat(client, messages=msg, tools=[WEATHER], tool_choice="required").json()["choices"][0]
    (call,) = forced["message"]["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Oslo","days":1}'}
    named = {"type": "function", "function": {"name": "get_time"}}
    r = chat(client, messages=msg, tools=[WEATHER, TIME], tool_choice=named).json()
    assert r["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_time"
    assert chat(client, messages=msg, tools=[WEATHER]).json()["choices"][0]["message"]["content"] == "Echo: Oslo"
    two = [{"name": "get_weather", "arguments": {"city": "a"}}, {"name": "get_time", "arguments": {}}]
    emu.script("m", Reply(tool_calls=two))
    r = chat(client, messages=msg, tools=[WEATHER, TIME], tool_choice="none").json()
    assert r["choices"][0]["message"]["content"] == "Echo: Oslo"
    assert "tool_calls" not in r["choices"][0]["message"]
    r = chat(client, messages=msg, tools=[WEATHER, TIME], parallel_tool_calls=False).json()
    assert len(r["choices"][0]["message"]["tool_calls"]) == 1
    assert len(chat(client, messages=msg, tools=[WEATHER, TIME]).json()["choices"][0]["message"]["tool_calls"]) == 2


def test_sdk_response_format(sdk: openai.OpenAI) -> None:
    out = sdk.chat.completions.create(
        model="m", messages=user("answer in JSON"), response_format={"type": "json_object"}
    )
    assert json.loads(out.choices[0].message.content or "") == {"echo": "Echo: answer in JSON"}
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "n": {"type": "integer"}, "kind": {"enum": ["a", "b"]}},
    }
    fmt: Any = {"type": "json_schema", "json_schema": {"name": "thing", "schema": schema, "strict": True}}
    out = sdk.chat.completions.create(model="m", messages=user("hi"), response_format=fmt)
    assert json.loads(out.choices[0].message.content or "") == {"name": "Echo: hi", "n": 1, "kind": "a"}


def test_limits_stop_and_reasoning_budget(emu: OpenAIEmulator, client: httpx.Client) -> None:
    r = chat(client, messages=user("a b c d e"), max_tokens=3).json()["choices"][0]
    assert (r["message"]["content"], r["finish_reason"]) == ("Echo: a b", "length")
    r = chat(client, messages=user("a b c d e"), stop=[" c", "zz"]).json()["choices"][0]
    assert (r["message"]["content"], r["finish_reason"]) == ("Echo: a b", "stop")
    # Reasoning models spend reasoning tokens first, out of max_completion_tokens.
    body = {"model": "o3-mini", "messages": user("a b c"), "reasoning_effort": "low"}
    r = client.post("/chat/completions", json={**body, "max_completion_tokens": 10}).json()
    assert (r["choices"][0]["message"]["content"], r["choices"][0]["finish_reason"]) == ("Echo: a", "length")
    assert r["usage"]["completion_tokens_details"]["reasoning_tokens"] == 8
    assert r["usage"]["completion_tokens"] == 10
    emu.script("m", Reply(reasoning="thinking it over", reasoning_tokens=2, refusal="I can't"))
    r = chat(client, messages=user("x")).json()["choices"][0]["message"]
    assert (r["content"], r["refusal"], r["reasoning_content"]) == (None, "I can't", "thinking it over")
    chunks, _ = stream(client, messages=user("x"))
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "thinking it over"
    assert "".join(d.get("refusal") or "" for d in deltas) == "I can't"


def test_logprobs(client: httpx.Client) -> None:
    r = chat(client, messages=user("a b"), logprobs=True, top_logprobs=2).json()["choices"][0]
    content = r["logprobs"]["content"]
    assert "".join(t["token"] for t in content) == "Echo: a b"
    assert all(t["logprob"] < 0 and len(t["top_logprobs"]) == 2 for t in content)
    assert all(t["top_logprobs"][0]["token"] == t["token"] for t in content)
    assert content[1]["bytes"] == list(b" a")
    chunks, _ = stream(client, messages=user("a b"), logprobs=True)
    streamed = [t for c in chunks if (lp := c["choices"][0]["logprobs"]) for t in lp["content"]]
    assert "".join(t["token"] for t in streamed) == "Echo: a b"


BAD: list[tuple[dict, str | None, str | None]] = [
    ({"messages": []}, "messages", "empty_array"),
    ({"messages": "hi"}, "messages", "invalid_type"),
    ({"messages": [{"content": "x"}]}, "messages[0].role", "missing_required_parameter"),
    ({"messages": [{"role": "bot", "content": "x"}]}, "messages[0].role", "invalid_value"),
    ({"messages": [{"role": "user", "content": {"text": "x"}}]}, "messages[0].content", "invalid_type"),
    (
        {
            "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": "u"},
                {"role": "user", "content": [{"type": "video", "url": "x"}]},
            ]
        },
        "messages[2].content[0].type",
        "invalid_value",
    ),
    (
        {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
        "messages[0].content[0].image_url",
        "missing_required_parameter",
    ),
    (
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]},
        "messages[0].content[0].image_url.url",
        "invalid_value",
    ),
    (
        {"messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x"}}]}]},
        "messages[0].content[0].type",
        "invalid_value",
    ),
    ({"messages": [{"role": "tool", "content": "r", "tool_call_id": "c"}]}, "messages.[0].role", None),
    (
        {"messages": [{**CALLED, "tool_calls": [{"id": "c", "type": "function", "function": {**FN, "arguments": {}}}]}]},
        "messages[0].tool_calls[0].function.arguments",
        "invalid_type",
    ),
    (
        {"messages": [CALLED, {"role": "tool", "content": "r"}]},
        "messages[1].tool_call_id",
        "missing_required_parameter",
    ),
    (
        {"messages": [CALLED, {"role": "user", "content": "u"}]},
        "messages.[0].role",
        None,
    ),
    ({"max_tokens": 0}, "max_tokens", "integer_below_min_value"),
    ({"temperature": 3}, "temperature", "decimal_above_max_value"),
    ({"temperature": "hot"}, "temperature", "invalid_type"),
    ({"n": True}, "n", "invalid_type"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "array_above_max_length"),
    ({"top_logprobs": 3}, "top_logprobs", "invalid_value"),
    ({"stream_options": {"include_usage": True}}, "stream_options", None),
    ({"tool_choice": "auto"}, "tool_choice", None),
    ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice", "invalid_value"),
    ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools[0].function.name", "invalid_value"),
    ({"response_format": {"type": "xml"}}, "response_format.type", "invalid_value"),
    ({"response_format": {"type": "json_object"}}, "messages", None),
    (
        {"response_format": {"type": "json_schema", "json_schema": {}}},
        "response_format.json_schema.name",
        "missing_required_parameter",
    ),
    ({"reasoning_effort": "low"}, "reasoning_effort", "unsupported_parameter"),
    ({"model": "o3", "max_tokens": 5}, "max_tokens", "unsupported_parameter"),
    ({"model": "gpt-5-mini", "temperature": 0.2}, "temperature", "unsupported_value"),
    ({"model": "o3", "reasoning_effort": "huge"}, "reasoning_effort", "invalid_value"),
    ({"metadata": {"k": 1}}, "metadata.k", "invalid_type"),
    ({"thinking": {"type": "enabled"}}, None, None),
    ({"model": None}, "model", "missing_required_parameter"),
]


@pytest.mark.parametrize(("extra", "param", "code"), BAD, ids=[str(b[1]) + ":" + str(b[2]) for b in BAD])
def test_bad_requests_are_refused_like_openai(
    emu: OpenAIEmulator, client: httpx.Client, extra: dict, param: str | None, code: str | None
) -> None:
    emu.script("m", Reply(text="scripted"))
    body = {"model": "m", "messages": user("hi"), **extra}
    if body["model"] is None:
        del body["model"]
    r = client.post("/chat/completions", json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
    assert error["message"]
    assert chat(client, messages=user("hi")).json()["choices"][0]["message"]["content"] == "scripted"


def test_sdk_sees_errors_and_unknown_fields_switch(emu: OpenAIEmulator, sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.chat.completions.create(model="m", messages=user("hi"), extra_body={"routing": 1})
    assert bad.value.message.endswith("Unrecognized request argument supplied: routing")
    emu.script("m", Reply(status=429, headers={"retry-after": "1"}))
    with pytest.raises(openai.RateLimitError) as limited:
        sdk.chat.completions.create(model="m", messages=user("hi"))
    assert limited.value.code == "rate_limit_exceeded"
    with OpenAIEmulator(allow_unknown_fields=True) as lenient:
        with openai.OpenAI(base_url=lenient.base_url, api_key="k", max_retries=0) as c:
            out = c.chat.completions.create(model="m", messages=user("hi"), extra_body={"routing": 1})
        assert out.choices[0].message.content == "Echo: hi"
        assert lenient.requests[0].body["routing"] == 1


def test_faults(emu: OpenAIEmulator, client: httpx.Client) -> None:
    emu.script("m", Reply(raw_body=b"{not json"))
    assert chat(client, messages=user("x")).content == b"{not json"
    emu.script("m", Reply(error_event_after_chunks=2))
    with client.stream("POST", "/chat/completions", json={"model": "m", "messages": user("x"), "stream": True}) as r:
        data = [d for _, d in parse_sse(r.read())]
    assert len(data) == 3 and json.loads(data[-1])["error"]["type"] == "server_error"
    emu.script("m", Reply(cut_after_chunks=2))
    received = b""
    with (
        pytest.raises(httpx.RemoteProtocolError),
        client.stream("POST", "/chat/completions", json={"model": "m", "messages": user("x"), "stream": True}) as r,
    ):
        for piece in r.iter_raw():
            received += piece
    assert len(parse_sse(received)) == 2 and b"[DONE]" not in received
    emu.script("m", Reply(status=503))
    r = chat(client, messages=user("x"), stream=True)
    assert r.status_code == 503 and r.json()["error"]["type"] == "server_error"


def test_n_choices_interleave_in_stream(client: httpx.Client) -> None:
    chunks, _ = stream(client, messages=user("a b c"), n=2, stream_options={"include_usage": True})
    texts: dict[int, str] = {}
    for c in chunks[:-1]:
        (choice,) = c["choices"]
        texts[choice["index"]] = texts.get(choice["index"], "") + (choice["delta"].get("content") or "")
    assert texts == {0: "Echo: a b c", 1: "Echo: a b c"}
    assert [c["choices"][0]["index"] for c in chunks[:4]] == [0, 1, 0, 1]
    assert chunks[-1]["usage"]["completion_tokens"] == 8
