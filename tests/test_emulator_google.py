"""Tests for the Gemini API emulator, over real sockets, with httpx and the official google-genai SDK."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.emulators.base import parse_sse
from tests.emulators.google_server import GoogleEmulator, Reply

KEY = "AIza-test-0123456789"
MODEL = "gemini-2.5-flash"
USER = "one two three four"
GEN = f"/v1beta/models/{MODEL}:generateContent"
SSE = f"/v1beta/models/{MODEL}:streamGenerateContent?alt=sse"


@pytest.fixture
def emu() -> Iterator[GoogleEmulator]:
    with GoogleEmulator(api_key=KEY) as e:
        yield e


@pytest.fixture
def client(emu: GoogleEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.base_url, headers={"x-goog-api-key": KEY}, timeout=5.0) as c:
        yield c


def body(**config: Any) -> dict:
    contents = [{"role": "user", "parts": [{"text": USER}]}]
    return {"contents": contents, **({"generationConfig": config} if config else {})}


def chunks(client: httpx.Client, payload: dict, path: str = SSE) -> tuple[bytes, list[dict]]:
    with client.stream("POST", path, json=payload) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = r.read()
    return raw, [json.loads(data) for _, data in parse_sse(raw)]


def answer(objs: list[dict], index: int = 0) -> str:
    """The answer text of candidate `index` across chunks: thought and signature parts excluded."""
    return "".join(
        p.get("text", "")
        for o in objs
        for c in o.get("candidates", [])
        if c["index"] == index
        for p in c.get("content", {}).get("parts", [])
        if not p.get("thought")
    )


def test_generate_content_shape(client: httpx.Client) -> None:
    payload = {**body(), "systemInstruction": {"parts": [{"text": "be brief"}]}}
    r = client.post(GEN, json=payload)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    resp = r.json()
    assert resp["candidates"] == [
        {"content": {"parts": [{"text": f"Echo: {USER}"}], "role": "model"}, "finishReason": "STOP", "index": 0}
    ]
    # one token per word: 4 user + 2 system in, "Echo:" + 4 words out
    assert resp["usageMetadata"] == {"promptTokenCount": 6, "candidatesTokenCount": 5, "totalTokenCount": 11}
    assert resp["modelVersion"] == MODEL
    assert resp["responseId"]
    assert "promptFeedback" not in resp


def test_stream_sse_framing_and_usage(client: httpx.Client) -> None:
    raw, objs = chunks(client, body())
    assert raw.startswith(b"data: {") and raw.endswith(b"}\r\n\r\n")  # Google frames SSE with CRLF
    assert b"event:" not in raw
    assert len(objs) == Reply.chunks
    assert answer(objs) == f"Echo: {USER}"
    reasons = [o["candidates"][0].get("finishReason") for o in objs]
    assert reasons == [None] * (len(objs) - 1) + ["STOP"]
    assert len({o["responseId"] for o in objs}) == 1
    counts = [o["usageMetadata"]["candidatesTokenCount"] for o in objs]
    assert counts == sorted(counts) and counts[-1] == 5  # running totals: the last one is final


def test_stream_without_alt_sse_is_one_json_array(client: httpx.Client) -> None:
    r = client.post(f"/v1beta/models/{MODEL}:streamGenerateContent", json=body())
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    objs = r.json()
    assert isinstance(objs, list) and len(objs) == Reply.chunks
    assert answer(objs) == f"Echo: {USER}"


@pytest.mark.parametrize(
    ("config", "text", "reason"),
    [
        ({"maxOutputTokens": 2}, "Echo: one", "MAX_TOKENS"),
        ({"stopSequences": ["three", "two"]}, "Echo: one ", "STOP"),
        ({"stop_sequences": ["four"], "max_output_tokens": 2}, "Echo: one", "MAX_TOKENS"),  # proto names work too
    ],
)
def test_max_tokens_and_stop_sequences(client: httpx.Client, config: dict, text: str, reason: str) -> None:
    cand = client.post(GEN, json=body(**config)).json()["candidates"][0]
    assert (cand["content"]["parts"], cand["finishReason"]) == ([{"text": text}], reason)
    _, objs = chunks(client, body(**config))
    assert answer(objs) == text


def test_candidate_count_gives_several_candidates(client: httpx.Client) -> None:
    resp = client.post(GEN, json=body(candidateCount=3)).json()
    texts = [c["content"]["parts"][0]["text"] for c in resp["candidates"]]
    assert texts == [f"Echo: {USER}", f"Echo: {USER} (1)", f"Echo: {USER} (2)"]
    assert [c["index"] for c in resp["candidates"]] == [0, 1, 2]
    assert resp["usageMetadata"]["candidatesTokenCount"] == 5 + 6 + 6
    _, objs = chunks(client, body(candidateCount=3))
    assert [answer(objs, i) for i in range(3)] == texts


def test_thinking_budget_with_thoughts(client: httpx.Client) -> None:
    config = {"thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True}}
    resp = client.post(GEN, json=body(**config)).json()
    thought, text, signature = resp["candidates"][0]["content"]["parts"]
    assert thought == {"text": f"Thinking about: {USER}", "thought": True}
    assert text == {"text": f"Echo: {USER}"}
    assert list(signature) == ["thoughtSignature"]  # a part holding only the signature
    assert base64.b64decode(signature["thoughtSignature"], validate=True)
    usage = resp["usageMetadata"]
    assert (usage["candidatesTokenCount"], usage["thoughtsTokenCount"]) == (5, 6)
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + 5 + 6
    _, objs = chunks(client, body(**config))
    assert answer(objs) == f"Echo: {USER}"
    thoughts = [p for o in objs for p in o["candidates"][0].get("content", {}).get("parts", []) if p.get("thought")]
    assert "".join(p["text"] for p in thoughts) == thought["text"]
    assert objs[-1]["usageMetadata"] == usage


@pytest.mark.parametrize(
    ("thinking", "thoughts_tokens", "parts"),
    [
        ({"thinkingBudget": 2}, 2, 2),  # thoughts not included: answer + signature
        ({"thinkingBudget": -1}, 6, 2),  # dynamic
        ({"thinkingBudget": 0}, None, 1),  # off
    ],
)
def test_thinking_budget_forms(client: httpx.Client, thinking: dict, thoughts_tokens: int | None, parts: int) -> None:
    resp = client.post(GEN, json=body(thinkingConfig=thinking)).json()
    assert resp["usageMetadata"].get("thoughtsTokenCount") == thoughts_tokens
    assert len(resp["candidates"][0]["content"]["parts"]) == parts
    assert not any(p.get("thought") for p in resp["candidates"][0]["content"]["parts"])


def test_thinking_tokens_count_against_max_output_tokens(client: httpx.Client) -> None:
    resp = client.post(GEN, json=body(maxOutputTokens=8, thinkingConfig={"thinkingBudget": 6})).json()
    assert resp["candidates"][0]["content"]["parts"][0] == {"text": "Echo: one"}
    assert resp["candidates"][0]["finishReason"] == "MAX_TOKENS"


def test_thinking_level_on_gemini_3(emu: GoogleEmulator, client: httpx.Client) -> None:
    path = "/v1beta/models/gemini-3-pro-preview:generateContent"
    resp = client.post(path, json=body(thinkingConfig={"thinkingLevel": "low"})).json()
    assert resp["usageMetadata"]["thoughtsTokenCount"] == 6
    assert emu.requests[-1].model == "gemini-3-pro-preview"


BAD = [
    ({"contents": []}, "contents is not specified"),
    ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, "valid role: user, model"),
    ({"contents": [{"role": "user", "parts": []}]}, "parts must not be empty"),
    ({"generationConfig": {"max_tokens": 5}}, 'Unknown name "maxTokens"'),
    ({"generationConfig": {"stopSequences": ["a", "b", "c", "d", "e", "f"]}}, "at most 5"),
    ({"generationConfig": {"temperature": 2.5}}, "temperature"),
    ({"generationConfig": {"topP": 1.5}}, "topP"),
    ({"generationConfig": {"candidateCount": 0}}, "candidateCount"),
    ({"generationConfig": {"seed": 1.5}}, "seed"),
    ({"generationConfig": {"presencePenalty": 2}}, "presencePenalty"),
    ({"generationConfig": {"thinkingConfig": {"thinkingBudget": 100, "thinkingLevel": "low"}}}, "only one of"),
    ({"generationConfig": {"thinkingConfig": {"thinkingLevel": "low"}}}, "Thinking level is not supported"),
    ({"generationConfig": {"thinkingConfig": {"thinkingBudget": -5}}}, "thinking budget (-5) is invalid"),
]


@pytest.mark.parametrize(("change", "message"), BAD)
def test_request_validation(emu: GoogleEmulator, client: httpx.Client, change: dict, message: str) -> None:
    payload = {**body(), **change}
    r = client.post(GEN, json=payload)
    assert r.status_code == 400
    error = r.json()["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert message in error["message"]
    assert emu.requests[-1].body == payload


def test_budget_zero_refused_on_thinking_only_models(client: httpx.Client) -> None:
    r = client.post("/v1beta/models/gemini-2.5-pro:generateContent", json=body(thinkingConfig={"thinkingBudget": 0}))
    assert r.status_code == 400
    assert "only works in thinking mode" in r.json()["error"]["message"]


def test_api_key_header_or_query(emu: GoogleEmulator) -> None:
    emu.script(MODEL, Reply(text="scripted"))
    with httpx.Client(base_url=emu.base_url) as c:
        r = c.post(GEN, json=body())
        assert (r.status_code, r.json()["error"]["status"]) == (403, "PERMISSION_DENIED")
        r = c.post(GEN, json=body(), headers={"x-goog-api-key": "wrong"})
        assert (r.status_code, r.json()["error"]["status"]) == (400, "INVALID_ARGUMENT")
        assert "API key not valid" in r.json()["error"]["message"]
        ok = c.post(GEN, json=body(), params={"key": KEY})
        assert ok.json()["candidates"][0]["content"]["parts"][0]["text"] == "scripted"  # refusals consumed none
        assert c.post(GEN, json=body(), headers={"x-goog-api-key": KEY}).status_code == 200
        assert c.post(GEN, content=b"{bad", headers={"x-goog-api-key": KEY}).status_code == 400
        assert c.post(f"/v1beta/models/{MODEL}:countTokens", json=body()).status_code == 404
    recs = emu.requests
    assert recs[2].query == {"key": KEY}
    assert recs[3].headers["x-goog-api-key"] == KEY
    assert (recs[3].path, recs[3].model, recs[3].body) == (GEN, MODEL, body())


@pytest.mark.parametrize(("status", "name"), [(429, "RESOURCE_EXHAUSTED"), (500, "INTERNAL"), (503, "UNAVAILABLE")])
def test_scripted_http_errors(emu: GoogleEmulator, client: httpx.Client, status: int, name: str) -> None:
    for path in (GEN, SSE):
        emu.script(MODEL, Reply(status=status), Reply(text="ok"))
        r = client.post(path, json=body())
        assert r.status_code == status
        assert r.json() == {"error": {"code": status, "message": r.json()["error"]["message"], "status": name}}
        assert client.post(GEN, json=body()).json()["candidates"][0]["content"]["parts"][0]["text"] == "ok"


@pytest.mark.parametrize("reason", ["SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII"])
def test_safety_finish_reasons(emu: GoogleEmulator, client: httpx.Client, reason: str) -> None:
    emu.script(MODEL, Reply(finish_reason=reason, text="partial"))
    cand = client.post(GEN, json=body()).json()["candidates"][0]
    assert (cand["finishReason"], cand["content"]["parts"]) == (reason, [{"text": "partial"}])
    _, objs = chunks(client, body())
    assert objs[-1]["candidates"][0]["finishReason"] == reason


def test_blocked_prompt(emu: GoogleEmulator, client: httpx.Client) -> None:
    emu.script(MODEL, Reply(block_reason="SAFETY"))
    resp = client.post(GEN, json=body()).json()
    assert "candidates" not in resp
    assert resp["promptFeedback"] == {"blockReason": "SAFETY"}
    assert resp["usageMetadata"] == {"promptTokenCount": 4, "candidatesTokenCount": 0, "totalTokenCount": 4}
    _, objs = chunks(client, body())
    assert len(objs) == 1 and objs[0]["promptFeedback"]["blockReason"] == "SAFETY"


def test_error_after_some_chunks(emu: GoogleEmulator, client: httpx.Client) -> None:
    emu.script(MODEL, Reply(error_event_after_chunks=1, error_code=503))
    _, objs = chunks(client, body())
    assert len(objs) == 2
    assert objs[0]["candidates"][0]["content"]["parts"][0]["text"]
    assert objs[1] == {"error": {"code": 503, "message": objs[1]["error"]["message"], "status": "UNAVAILABLE"}}
    r = client.post(f"/v1beta/models/{MODEL}:streamGenerateContent", json=body())
    assert [list(o) for o in r.json()] == [["candidates", "usageMetadata", "modelVersion", "responseId"], ["error"]]
    emu.script(MODEL, Reply(error_event_after_chunks=Reply.chunks))  # every chunk, then the error
    _, objs = chunks(client, body())
    assert answer(objs[:-1]) == f"Echo: {USER}"
    assert objs[-1]["error"]["status"] == "INTERNAL"


def test_cut_stream_and_malformed_bodies(emu: GoogleEmulator, client: httpx.Client) -> None:
    for path, tail in ((SSE, b"\r\n\r\n"), (f"/v1beta/models/{MODEL}:streamGenerateContent", b"}")):
        emu.script(MODEL, Reply(cut_after_chunks=2))
        received = b""
        with pytest.raises(httpx.RemoteProtocolError), client.stream("POST", path, json=body()) as r:
            for piece in r.iter_raw():
                received += piece
        assert received.endswith(tail)  # two whole chunks, then the connection drops
        assert received.count(b'"responseId"') == 2
    emu.script(MODEL, Reply(raw_body=b'{"candidates":[{'))
    assert client.post(GEN, json=body()).content == b'{"candidates":[{'
    assert chunks(client, body())[0] == b'{"candidates":[{'


def test_slow_start_and_disconnect(emu: GoogleEmulator, client: httpx.Client) -> None:
    emu.script(MODEL, Reply(delay_s=5.0))
    with pytest.raises(httpx.ReadTimeout):
        client.post(GEN, json=body(), timeout=0.3)
    t0 = time.monotonic()
    assert emu.wait_for_disconnect(1.0)
    assert time.monotonic() - t0 < 0.5
    assert emu.disconnects == 1


def test_official_sdk_reads_the_wire_format(emu: GoogleEmulator) -> None:
    """google-genai as an independent parser (it sends snake_case thinkingConfig fields)."""
    sdk = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=emu.base_url))
    thinking = types.ThinkingConfig(thinking_budget=1024, include_thoughts=True)
    config = types.GenerateContentConfig(stop_sequences=["four"], thinking_config=thinking)
    resp = sdk.models.generate_content(model=MODEL, contents=USER, config=config)
    assert resp.text == "Echo: one two three "
    assert resp.usage_metadata is not None and resp.usage_metadata.thoughts_token_count == 6
    streamed = sdk.models.generate_content_stream(model=MODEL, contents=USER, config=config)
    assert "".join(c.text or "" for c in streamed) == "Echo: one two three "
    emu.script(MODEL, Reply(status=429))
    with pytest.raises(genai_errors.ClientError) as info:
        sdk.models.generate_content(model=MODEL, contents=USER)
    assert (info.value.code, info.value.status) == (429, "RESOURCE_EXHAUSTED")
    assert emu.requests[0].headers["x-goog-api-key"] == KEY
