"""Tests for the Anthropic Messages API emulator, over real sockets, with httpx and the official SDK."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.emulators.anthropic_server import AnthropicEmulator, Reply
from tests.emulators.base import parse_sse

KEY = "sk-ant-test-0123456789"
HEADERS = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
USER = "one two three four"


@pytest.fixture
def emu() -> Iterator[AnthropicEmulator]:
    with AnthropicEmulator(api_key=KEY) as e:
        yield e


@pytest.fixture
def client(emu: AnthropicEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.base_url, headers=HEADERS, timeout=5.0) as c:
        yield c


def body(model: str = "claude-sonnet-4-20250514", **extra: Any) -> dict:
    return {"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": USER}], **extra}


def events(client: httpx.Client, payload: dict) -> tuple[bytes, list[tuple[str | None, dict]]]:
    """The raw stream and its (event name, parsed data) pairs."""
    with client.stream("POST", "/v1/messages", json={**payload, "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = r.read()
    return raw, [(name, json.loads(data)) for name, data in parse_sse(raw)]


def streamed_text(evs: list[tuple[str | None, dict]], kind: str = "text_delta", key: str = "text") -> str:
    return "".join(d["delta"][key] for _, d in evs if d["type"] == "content_block_delta" and d["delta"]["type"] == kind)


def test_message_shape(client: httpx.Client) -> None:
    r = client.post("/v1/messages", json=body(system="be brief"))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["request-id"].startswith("req_")
    msg = r.json()
    assert msg["id"].startswith("msg_")
    assert (msg["type"], msg["role"], msg["model"]) == ("message", "assistant", "claude-sonnet-4-20250514")
    assert msg["content"] == [{"type": "text", "text": f"Echo: {USER}"}]
    assert (msg["stop_reason"], msg["stop_sequence"]) == ("end_turn", None)
    # one token per word: 4 user + 2 system in, "Echo:" + 4 words out
    usage = {"input_tokens": 6, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 5}
    assert msg["usage"] == usage


@pytest.mark.parametrize(
    ("extra", "text", "stop_reason", "stop_sequence"),
    [
        ({"max_tokens": 2}, "Echo: one", "max_tokens", None),
        ({"stop_sequences": ["three", "two"]}, "Echo: one ", "stop_sequence", "two"),
        ({"stop_sequences": ["four"], "max_tokens": 2}, "Echo: one", "max_tokens", None),
    ],
)
def test_max_tokens_and_stop_sequences(
    client: httpx.Client, extra: dict, text: str, stop_reason: str, stop_sequence: str | None
) -> None:
    msg = client.post("/v1/messages", json=body(**extra)).json()
    assert msg["content"] == [{"type": "text", "text": text}]
    assert (msg["stop_reason"], msg["stop_sequence"]) == (stop_reason, stop_sequence)
    _, evs = events(client, body(**extra))
    assert streamed_text(evs) == text
    assert evs[-2][1]["delta"] == {"stop_reason": stop_reason, "stop_sequence": stop_sequence}


def test_stream_framing_and_event_order(client: httpx.Client) -> None:
    raw, evs = events(client, body())
    assert raw.startswith(b"event: message_start\ndata: {")
    assert all(name == data["type"] for name, data in evs)  # every event names its type
    names = [name for name, _ in evs]
    deltas = names.count("content_block_delta")
    assert names == [
        "message_start", "content_block_start", "ping", *["content_block_delta"] * deltas,
        "content_block_stop", "message_delta", "message_stop",
    ]  # fmt: skip
    assert deltas == Reply.chunks
    start = evs[0][1]["message"]
    assert (start["content"], start["stop_reason"], start["usage"]["output_tokens"]) == ([], None, 1)
    assert streamed_text(evs) == f"Echo: {USER}"
    final = client.post("/v1/messages", json=body()).json()
    # message_delta usage is cumulative: it equals the non-streamed totals.
    assert evs[-2][1]["usage"] == final["usage"]


def test_thinking_enabled(client: httpx.Client) -> None:
    payload = body(max_tokens=2000, thinking={"type": "enabled", "budget_tokens": 1024})
    msg = client.post("/v1/messages", json=payload).json()
    thinking, text = msg["content"]
    assert thinking["type"] == "thinking"
    assert thinking["thinking"] == f"Thinking about: {USER}"
    assert base64.b64decode(thinking["signature"], validate=True)
    assert text == {"type": "text", "text": f"Echo: {USER}"}
    assert msg["usage"]["output_tokens"] == 6 + 5  # thinking counts as output
    _, evs = events(client, payload)
    assert streamed_text(evs, "thinking_delta", "thinking") == thinking["thinking"]
    kinds = [(d["type"], d.get("delta", {}).get("type")) for _, d in evs if d.get("index") == 0]
    # the signature comes in one signature_delta just before the block stops
    assert kinds[-2:] == [("content_block_delta", "signature_delta"), ("content_block_stop", None)]
    assert streamed_text(evs, "signature_delta", "signature") == thinking["signature"]
    assert evs[1][1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}


def test_thinking_budget_caps_thinking_and_counts_against_max_tokens(
    emu: AnthropicEmulator, client: httpx.Client
) -> None:
    emu.script("m", Reply(thinking="w " * 1500))
    payload = body("m", max_tokens=1030, thinking={"type": "enabled", "budget_tokens": 1024})
    msg = client.post("/v1/messages", json=payload).json()
    assert msg["content"][0]["thinking"] == "w " * 1023 + "w"
    assert msg["content"][1]["text"] == f"Echo: {USER}"  # 6 tokens left for 5
    assert msg["stop_reason"] == "end_turn"
    payload["max_tokens"] = 1026
    msg = client.post("/v1/messages", json=payload).json()
    assert msg["content"][1]["text"] == "Echo: one"  # 1026 - 1024 thinking tokens left
    assert (msg["stop_reason"], msg["usage"]["output_tokens"]) == ("max_tokens", 1026)


@pytest.mark.parametrize("thinking", [{"type": "adaptive"}, {"type": "disabled"}, None])
def test_thinking_adaptive_and_disabled(client: httpx.Client, thinking: dict | None) -> None:
    msg = client.post("/v1/messages", json=body(thinking=thinking)).json()
    kinds = [b["type"] for b in msg["content"]]
    assert kinds == (["thinking", "text"] if thinking == {"type": "adaptive"} else ["text"])


def test_redacted_thinking_and_tool_use(emu: AnthropicEmulator, client: httpx.Client) -> None:
    tool = {"name": "lookup", "input": {"city": "Zürich", "days": 3}}
    emu.script("m", Reply(redacted_thinking=True, tool_use=tool, text="Let me check."))
    msg = client.post("/v1/messages", json=body("m")).json()
    redacted, text, use = msg["content"]
    assert redacted["type"] == "redacted_thinking" and redacted["data"]
    assert text == {"type": "text", "text": "Let me check."}
    assert (use["type"], use["name"], use["input"]) == ("tool_use", "lookup", tool["input"])
    assert use["id"].startswith("toolu_")
    assert msg["stop_reason"] == "tool_use"
    _, evs = events(client, body("m"))
    starts = [d["content_block"] for _, d in evs if d["type"] == "content_block_start"]
    assert starts[0] == redacted  # arrives whole, no deltas
    assert starts[2]["input"] == {}
    assert json.loads(streamed_text(evs, "input_json_delta", "partial_json")) == tool["input"]


BAD = [
    ({"max_tokens": None}, "max_tokens: Field required"),
    ({"messages": [{"role": "system", "content": "x"}]}, 'Unexpected role "system"'),
    ({"messages": [{"role": "assistant", "content": "x"}]}, "alternate"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}, "alternate"),
    ({"messages": []}, "at least one message"),
    ({"stop_sequences": ["ok", " \n"]}, "non-whitespace"),
    ({"temperature": 1.5}, "temperature"),
    ({"top_p": -0.1}, "top_p"),
    ({"thinking": {"type": "enabled", "budget_tokens": 1023}}, "greater than or equal to 1024"),
    ({"thinking": {"type": "enabled", "budget_tokens": 1024}, "max_tokens": 1024}, "budget_tokens"),
    ({"thinking": {"type": "on"}}, "thinking.type"),
    ({"thinking": {"type": "adaptive"}, "temperature": 0.5}, "temperature` may only be set to 1"),
    ({"thinking": {"type": "adaptive"}, "top_k": 5}, "top_k"),
    ({"model": "claude-sonnet-4-5-20250929", "temperature": 0.5, "top_p": 0.9}, "cannot both be specified"),
    ({"model": "claude-opus-4-7", "thinking": {"type": "enabled", "budget_tokens": 2000}}, "adaptive"),
]


@pytest.mark.parametrize(("change", "message"), BAD)
def test_request_validation(emu: AnthropicEmulator, client: httpx.Client, change: dict, message: str) -> None:
    emu.script("claude-sonnet-4-20250514", Reply(text="scripted"))
    payload = {k: v for k, v in {**body(max_tokens=2000), **change}.items() if v is not None}
    r = client.post("/v1/messages", json=payload)
    assert r.status_code == 400
    err = r.json()
    assert (err["type"], err["error"]["type"]) == ("error", "invalid_request_error")
    assert message in err["error"]["message"]
    assert err["request_id"].startswith("req_")
    assert emu.requests[-1].body == payload  # recorded even when refused


def test_valid_sampling_edges_pass(client: httpx.Client) -> None:
    for extra in ({"temperature": 0.0, "top_k": 1}, {"thinking": {"type": "adaptive"}, "temperature": 1, "top_p": 0.95}):
        assert client.post("/v1/messages", json=body(**extra)).status_code == 200
    # temperature with top_p is fine on models before 4.5
    assert client.post("/v1/messages", json=body(temperature=0.2, top_p=0.5)).status_code == 200


def test_api_version_2026_refuses_sampling_parameters(client: httpx.Client) -> None:
    headers = {"anthropic-version": "2026-10-21"}
    r = client.post("/v1/messages", json=body(temperature=1.0), headers=headers)
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "temperature: Extra inputs are not permitted"
    assert client.post("/v1/messages", json=body(), headers=headers).status_code == 200


def test_auth_and_version_headers(emu: AnthropicEmulator) -> None:
    emu.script("claude-sonnet-4-20250514", Reply(text="scripted"))
    with httpx.Client(base_url=emu.base_url) as c:
        version = {"anthropic-version": "2023-06-01"}
        for headers in (version, {**version, "x-api-key": "wrong"}, {**version, "Authorization": f"Bearer {KEY}x"}):
            r = c.post("/v1/messages", json=body(), headers=headers)
            assert r.status_code == 401
            assert r.json()["error"] == {"type": "authentication_error", "message": "invalid x-api-key"}
        r = c.post("/v1/messages", json=body(), headers={"x-api-key": KEY})
        assert r.status_code == 400
        assert "anthropic-version" in r.json()["error"]["message"]
        r = c.post("/v1/messages", json=body(), headers={"x-api-key": KEY, "anthropic-version": "2024-13-01"})
        assert r.status_code == 400
        for headers in ({"x-api-key": KEY}, {"Authorization": f"Bearer {KEY}"}):
            ok = c.post("/v1/messages", json=body(), headers={**version, **headers})
            assert ok.json()["content"][0]["text"] == "scripted"  # refusals consumed no script
        assert c.post("/v1/messages", content=b"{bad", headers={**version, "x-api-key": KEY}).status_code == 400
        assert c.get("/v1/models").status_code == 404
    recs = emu.requests
    assert recs[0].headers["anthropic-version"] == "2023-06-01"
    assert recs[5].headers["x-api-key"] == KEY
    assert recs[5].model == "claude-sonnet-4-20250514"


@pytest.mark.parametrize(
    ("status", "type_"), [(429, "rate_limit_error"), (529, "overloaded_error"), (500, "api_error")]
)
def test_scripted_http_errors(emu: AnthropicEmulator, client: httpx.Client, status: int, type_: str) -> None:
    for stream in (True, False):  # an HTTP error comes before any stream starts
        emu.script("m", Reply(status=status), Reply(text="ok"))
        r = client.post("/v1/messages", json=body("m", stream=stream))
        assert r.status_code == status
        assert r.headers["content-type"].startswith("application/json")
        assert r.json()["error"]["type"] == type_
        assert ("retry-after" in r.headers) == (status == 429)
        assert client.post("/v1/messages", json=body("m")).json()["content"][0]["text"] == "ok"


def test_error_event_after_content(emu: AnthropicEmulator, client: httpx.Client) -> None:
    emu.script("m", Reply(error_event_after_chunks=2))
    _, evs = events(client, body("m"))
    assert [n for n, _ in evs][-3:] == ["content_block_delta", "content_block_delta", "error"]
    assert evs[-1][1]["error"] == {"type": "overloaded_error", "message": "Overloaded"}
    assert "message_stop" not in [n for n, _ in evs]
    emu.script("m", Reply(error_event_after_chunks=0, error_type="api_error"))
    _, evs = events(client, body("m"))
    assert evs[-1][1]["error"]["type"] == "api_error"
    emu.script("m", Reply(error_event_after_chunks=Reply.chunks))  # all text sent, then the error
    _, evs = events(client, body("m"))
    assert [n for n, _ in evs][-2:] == ["content_block_stop", "error"]
    assert streamed_text(evs) == f"Echo: {USER}"


def test_cut_stream_and_malformed_bodies(emu: AnthropicEmulator, client: httpx.Client) -> None:
    emu.script("m", Reply(cut_after_chunks=1))
    received = b""
    with pytest.raises(httpx.RemoteProtocolError), client.stream("POST", "/v1/messages", json=body("m", stream=True)) as r:
        for piece in r.iter_raw():
            received += piece
    assert [n for n, _ in parse_sse(received)][-1] == "content_block_delta"
    assert b"message_stop" not in received
    emu.script("m", Reply(raw_body=b'{"type":"message","content":'))
    assert client.post("/v1/messages", json=body("m")).content == b'{"type":"message","content":'
    raw, _ = events(client, body("m"))
    assert raw == b'{"type":"message","content":'


def test_slow_start_and_disconnect(emu: AnthropicEmulator, client: httpx.Client) -> None:
    emu.script("m", Reply(delay_s=5.0))
    t0 = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        client.post("/v1/messages", json=body("m"), timeout=0.3)
    assert emu.wait_for_disconnect(1.0)
    assert time.monotonic() - t0 < 1.5
    assert emu.disconnects == 1


def test_official_sdk_reads_the_wire_format(emu: AnthropicEmulator) -> None:
    """The anthropic SDK (it sends Authorization: Bearer and version 2026-10-21) as an independent parser."""
    sdk = anthropic.Anthropic(api_key=KEY, base_url=emu.base_url, max_retries=0)
    thinking: Any = {"type": "enabled", "budget_tokens": 1024}
    kwargs: Any = {"model": "claude-sonnet-4-20250514", "max_tokens": 2000, "messages": body()["messages"]}
    msg = sdk.messages.create(**kwargs, thinking=thinking)
    assert [b.type for b in msg.content] == ["thinking", "text"]
    with sdk.messages.stream(**kwargs, thinking=thinking) as stream:
        assert "".join(stream.text_stream) == f"Echo: {USER}"
        final = stream.get_final_message()
    assert final.content[0].signature == msg.content[0].signature  # type: ignore[union-attr]
    assert final.usage.output_tokens == msg.usage.output_tokens
    emu.script("m", Reply(status=529))
    with pytest.raises(anthropic.APIStatusError) as info:
        sdk.messages.create(**{**kwargs, "model": "m"})
    assert info.value.status_code == 529
    emu.script("m", Reply(error_event_after_chunks=1))
    with (
        pytest.raises(anthropic.APIStatusError, match="overloaded_error"),
        sdk.messages.stream(**{**kwargs, "model": "m"}) as stream,
    ):
        list(stream.text_stream)
    assert emu.requests[0].headers["authorization"] == f"Bearer {KEY}"
