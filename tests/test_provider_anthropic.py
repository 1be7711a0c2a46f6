"""`type: anthropic` over real sockets: the proxy in front of the Anthropic Messages emulator
(and the OpenAI emulator, for fallbacks across providers). Issue 8, sections 2, 4 and 5;
docs/providers.md has the parameter table these tests hold the connector to."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from orq_ai_sdk import Orq

from tests.completion_sse import chunks_and_error, parse_sse, texts
from tests.conftest import KEY_A, UPSTREAM_KEY
from tests.emulators.anthropic_server import AnthropicEmulator, Reply, anthropic_error
from tests.emulators.openai_server import OpenAIEmulator
from tests.emulators.openai_server import Reply as OpenAIReply
from tests.proxy_process import ProxyProcess

ANT_KEY = "sk-ant-upstream-0123456789"
URL = "/v2/router/completions"
M = "claude-sonnet-4-20250514"  # no model-specific rules
EXCLUSIVE = "claude-sonnet-4-5"  # temperature and top_p not together
ADAPTIVE_ONLY = "claude-opus-4-7"  # thinking {type: enabled} refused upstream
PROMPT = "one two three"
ANSWER = f"Echo: {PROMPT}"


def config(ant: AnthropicEmulator, oai: OpenAIEmulator) -> str:
    return f"""
server: {{host: 127.0.0.1, port: {{port}}, max_request_seconds: 20}}
logging: {{level: info, format: json}}
auth:
  keys: [{{name: team-a, key: "{KEY_A}"}}]
providers:
  ant: {{type: anthropic, base_url: "{ant.base_url}", api_key: "{ANT_KEY}"}}
  ant26: {{type: anthropic, base_url: "{ant.base_url}", api_key: "{ANT_KEY}", anthropic_version: "2026-10-21"}}
  antbadkey: {{type: anthropic, base_url: "{ant.base_url}", api_key: "sk-ant-wrong-0123456789"}}
  emu: {{type: openai, base_url: "{oai.base_url}", api_key: "{UPSTREAM_KEY}"}}
routing: {{backoff_base_ms: 20, backoff_max_ms: 200, retry_after_cap_seconds: 2}}
"""


@pytest.fixture(scope="module")
def ant_emulator() -> Iterator[AnthropicEmulator]:
    with AnthropicEmulator(api_key=ANT_KEY) as emu:
        yield emu


@pytest.fixture(scope="module")
def proxy(ant_emulator: AnthropicEmulator, emulator: OpenAIEmulator,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    process = ProxyProcess(config(ant_emulator, emulator), Path(tmp_path_factory.mktemp("anthropic")))
    process.start()
    yield process
    process.stop()


@pytest.fixture()
def ant(ant_emulator: AnthropicEmulator) -> AnthropicEmulator:
    ant_emulator.reset()
    return ant_emulator



def post(client: httpx.Client, **body: Any) -> httpx.Response:
    body.setdefault("model", f"ant/{M}")
    body.setdefault("prompt", PROMPT)
    return client.post(URL, json=body)


def stream(client: httpx.Client, **body: Any) -> tuple[httpx.Response, list[dict], dict | None, bool]:
    """The response, its chunks (each valid against the spec), the in-band error (if any) and
    whether [DONE] ended it."""
    body.setdefault("model", f"ant/{M}")
    body.setdefault("prompt", PROMPT)
    with client.stream("POST", URL, json={**body, "stream": True}) as r:
        raw = r.read()
    if not r.headers.get("content-type", "").startswith("text/event-stream"):
        return r, [], None, False
    payloads, done = parse_sse(raw)
    chunks, error = chunks_and_error(payloads)
    return r, chunks, error, done


def sent(ant: AnthropicEmulator) -> list[dict]:
    return [r.body or {} for r in ant.requests]


# -- the request Anthropic receives -----------------------------------------------------------------------
def test_non_stream(client, ant):
    r = post(client, max_tokens=50, user="user-42", temperature=1, top_p=1, seed=7,
             frequency_penalty=0.5, presence_penalty=0.5, logit_bias={"50256": -100})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "text_completion" and body["model"] == M and body["id"].startswith("msg_")
    assert body["choices"] == [{"text": ANSWER, "index": 0, "finish_reason": "stop"}]
    assert body["usage"]["prompt_tokens"] == 3 and body["usage"]["completion_tokens"] == 4
    assert body["usage"]["total_tokens"] == 7
    assert r.headers["x-switchyard-model"] == f"ant/{M}"
    [recorded] = ant.requests
    assert recorded.path == "/v1/messages"
    assert recorded.headers["x-api-key"] == ANT_KEY and recorded.headers["anthropic-version"] == "2023-06-01"
    # Spec defaults (temperature 1, top_p 1) are not sent; seed, penalties and logit_bias are dropped.
    assert recorded.body == {"model": M, "max_tokens": 50, "messages": [{"role": "user", "content": PROMPT}],
                             "metadata": {"user_id": "user-42"}}


def test_omitted_max_tokens_is_the_spec_default(client, ant):
    r = post(client, prompt="a " * 30)
    assert r.status_code == 200, r.text
    assert sent(ant)[0]["max_tokens"] == 16
    assert r.json()["choices"][0]["finish_reason"] == "length"
    assert r.json()["usage"]["completion_tokens"] == 16


def test_stream(client, ant):
    ant.script(M, Reply(chunks=4))
    r, chunks, error, done = stream(client, max_tokens=50)
    assert r.status_code == 200 and done and error is None
    assert texts(chunks) == {0: ANSWER}
    assert len(chunks) == 5  # four text deltas, then the finish with the usage
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert sent(ant)[0]["stream"] is True


def test_stream_options_from_openais_sdk_are_accepted(client, ant):
    """OpenAI's SDK sends `stream_options` with a streamed completion: it is not OpenAI-only
    noise to refuse, and the usage comes on the last chunk either way."""
    ant.script(M, Reply(chunks=4))
    r, chunks, error, done = stream(client, max_tokens=50, stream_options={"include_usage": True})
    assert r.status_code == 200 and done and error is None, r.text
    assert texts(chunks) == {0: ANSWER}
    assert chunks[-1]["usage"]["completion_tokens"] == 4
    assert "stream_options" not in sent(ant)[0]


def test_stream_usage_is_assigned_not_added(client, ant):
    """message_start says output_tokens 1, message_delta the cumulative count: not 1 + count."""
    ant.script(M, Reply(text="a b c d e f"))
    _r, chunks, _, done = stream(client, max_tokens=50)
    assert done and chunks[-1]["usage"]["completion_tokens"] == 6


# -- what the proxy does for Anthropic: n, prompt lists, echo, stop -------------------------------------------
def test_n_fans_out(client, ant):
    r = post(client, n=3, max_tokens=50)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert all(c["text"] == ANSWER for c in body["choices"])
    assert body["usage"] == {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}
    assert len(ant.requests) == 3 and all("n" not in b for b in sent(ant))


def test_n_fans_out_streamed(client, ant):
    _r, chunks, error, done = stream(client, n=2, max_tokens=50)
    assert done and error is None
    assert texts(chunks) == {0: ANSWER, 1: ANSWER}
    assert chunks[-1]["usage"]["completion_tokens"] == 8
    assert len(ant.requests) == 2


def test_prompt_list_times_n(client, ant):
    r = post(client, prompt=["alpha", "beta"], n=2, max_tokens=50)
    assert r.status_code == 200, r.text
    assert [(c["index"], c["text"]) for c in r.json()["choices"]] == [
        (0, "Echo: alpha"), (1, "Echo: alpha"), (2, "Echo: beta"), (3, "Echo: beta")]
    assert sorted(b["messages"][0]["content"] for b in sent(ant)) == ["alpha", "alpha", "beta", "beta"]


def test_echo(client, ant):
    r = post(client, echo=True, max_tokens=50)
    assert r.json()["choices"][0]["text"] == PROMPT + ANSWER
    assert "echo" not in sent(ant)[0]
    r, chunks, _, done = stream(client, echo=True, max_tokens=50)
    assert done and texts(chunks) == {0: PROMPT + ANSWER}


def test_stop_becomes_stop_sequences_without_whitespace_only_ones(client, ant):
    r = post(client, stop=["\n", "  ", "three"], max_tokens=50)
    assert r.status_code == 200, r.text
    assert sent(ant)[0]["stop_sequences"] == ["three"]
    assert r.json()["choices"][0] == {"text": "Echo: one two ", "index": 0, "finish_reason": "stop"}
    post(client, stop="\n", max_tokens=50)
    assert "stop_sequences" not in sent(ant)[1]


# -- thinking ---------------------------------------------------------------------------------------------
def test_thinking_enabled(client, ant):
    r = post(client, max_tokens=2000, thinking={"type": "enabled", "budget_tokens": 1024})
    assert r.status_code == 200, r.text
    assert sent(ant)[0]["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    body = r.json()
    assert body["choices"][0]["text"] == ANSWER  # the thinking text never reaches the choice
    # Anthropic's output_tokens count thinking and answer together; it does not split them.
    assert body["usage"]["completion_tokens"] == len(f"Thinking about: {PROMPT}".split()) + 4


def test_thinking_enabled_streamed(client, ant):
    ant.script(M, Reply(redacted_thinking=True))
    _r, chunks, error, done = stream(client, max_tokens=2000, thinking={"type": "enabled", "budget_tokens": 1024})
    assert done and error is None
    assert texts(chunks) == {0: ANSWER}
    assert all("Thinking" not in c["text"] for chunk in chunks for c in chunk["choices"])


def test_thinking_adaptive(client, ant):
    r = post(client, max_tokens=100, thinking={"type": "adaptive"})
    assert r.status_code == 200, r.text
    assert sent(ant)[0]["thinking"] == {"type": "adaptive"}
    assert r.json()["choices"][0]["text"] == ANSWER


def test_thinking_disabled_sends_nothing(client, ant):
    r = post(client, max_tokens=100, thinking={"type": "disabled"})
    assert r.status_code == 200, r.text
    assert "thinking" not in sent(ant)[0]


def test_thinking_enabled_on_an_adaptive_only_model_is_sent_as_adaptive(client, ant):
    r = post(client, model=f"ant/{ADAPTIVE_ONLY}", max_tokens=2000,
             thinking={"type": "enabled", "budget_tokens": 1024})
    assert r.status_code == 200, r.text
    assert sent(ant)[0]["thinking"] == {"type": "adaptive"}


def test_thinking_budget_must_be_below_max_tokens_even_the_default(client, ant):
    r = post(client, thinking={"type": "enabled", "budget_tokens": 1024})  # max_tokens omitted: 16
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["param"] == "thinking.budget_tokens" and "'ant'" in error["message"]
    assert ant.requests == []


# -- declared rules: refused before any call, or dropped --------------------------------------------------------
@pytest.mark.parametrize(("model", "fields", "param"), [
    (EXCLUSIVE, {"temperature": 0.5, "top_p": 0.9}, "top_p"),
    (M, {"temperature": 1.5}, "temperature"),
    (M, {"temperature": 0.5, "max_tokens": 2000, "thinking": {"type": "enabled", "budget_tokens": 1024}},
     "temperature"),
    (M, {"logprobs": 2}, "logprobs"),
], ids=["temperature-with-top_p", "temperature-above-1", "temperature-with-thinking", "extra-field"])
def test_refused_before_any_upstream_call(client, ant, model, fields, param):
    r = post(client, model=f"ant/{model}", **fields)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["code"] == "unsupported_parameter" and "'ant'" in error["message"]
    assert ant.requests == []


def test_refusal_is_checked_for_fallbacks_too(client, ant, upstream):
    r = post(client, model="emu/m", fallbacks=[{"model": f"ant/{EXCLUSIVE}"}], temperature=0.5, top_p=0.9)
    assert r.status_code == 400 and r.json()["error"]["param"] == "top_p"
    assert upstream.requests == [] and ant.requests == []


def test_both_samplers_reach_models_that_take_them(client, ant):
    r = post(client, temperature=0.5, top_p=0.9, max_tokens=50)
    assert r.status_code == 200, r.text
    assert (sent(ant)[0]["temperature"], sent(ant)[0]["top_p"]) == (0.5, 0.9)


def test_sampling_dropped_on_the_version_that_removed_it(client, ant):
    r = post(client, model=f"ant26/{EXCLUSIVE}", temperature=0.5, top_p=0.9, max_tokens=50)
    assert r.status_code == 200, r.text
    [recorded] = ant.requests
    assert recorded.headers["anthropic-version"] == "2026-10-21"
    assert "temperature" not in recorded.body and "top_p" not in recorded.body


# -- errors -----------------------------------------------------------------------------------------------
def test_429_is_retried_honouring_retry_after(client, ant):
    ant.script(M, Reply(status=429, headers={"retry-after": "0.5"}), Reply())
    r = post(client, max_tokens=50, retry={"count": 1, "on_codes": [429]})
    assert r.status_code == 200, r.text
    first, second = ant.requests
    assert second.received_at - first.received_at >= 0.45
    assert r.headers["x-switchyard-attempts"] == "2"


def test_429_passes_through(client, ant):
    ant.script(M, Reply(status=429))
    r = post(client)
    assert r.status_code == 429
    error = r.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and "rate limit" in error["message"]


@pytest.mark.parametrize(("status", "expected", "code", "message"), [
    (500, 500, "provider_error", "Internal server error"),
    (529, 503, "provider_overloaded", "Overloaded"),
    (413, 413, "request_too_large", "maximum allowed number of bytes"),
    (400, 400, "provider_error", "Invalid request (emulated)."),
])
def test_error_statuses(client, ant, status, expected, code, message):
    ant.script(M, Reply(status=status))
    r = post(client)
    assert r.status_code == expected, r.text
    error = r.json()["error"]
    assert error["code"] == code and message in error["message"]


def test_upstream_400_keeps_anthropics_message(client, ant):
    ant.script(M, Reply(status=400, error_body=anthropic_error(400, "prompt is too long: 300000 tokens > 200000")))
    r = post(client)
    assert r.status_code == 400 and r.json()["error"]["message"] == "prompt is too long: 300000 tokens > 200000"


def test_wrong_provider_key_is_not_the_clients_fault(client, ant):
    r = post(client, model=f"antbadkey/{M}")
    assert r.status_code == 502
    assert "credentials" in r.json()["error"]["message"]


def test_overloaded_event_before_content_is_retried_invisibly(client, ant):
    ant.script(M, Reply(error_event_after_chunks=0), Reply())
    _r, chunks, error, done = stream(client, max_tokens=50, retry={"count": 1, "on_codes": [503]})
    assert done and error is None and texts(chunks) == {0: ANSWER}
    assert len(ant.requests) == 2


def test_error_while_thinking_is_still_retried_invisibly(client, ant):
    """Thinking deltas come before the answer; the completions surface shows none of them, so
    the stream is not committed until the first answer text and a failure in between retries."""
    ant.script(M, Reply(chunks=3, error_event_after_chunks=2), Reply())
    r, chunks, error, done = stream(client, max_tokens=2000, thinking={"type": "enabled", "budget_tokens": 1024},
                                    retry={"count": 1, "on_codes": [503]})
    assert r.status_code == 200 and done and error is None and texts(chunks) == {0: ANSWER}
    assert len(ant.requests) == 2


def test_overloaded_event_before_content_is_a_json_503(client, ant):
    ant.script(M, Reply(error_event_after_chunks=0))
    r, _chunks, _error, _done = stream(client, max_tokens=50)
    assert r.status_code == 503 and r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]["code"] == "provider_overloaded"


def test_error_event_after_the_first_chunk(client, ant):
    ant.script(M, Reply(chunks=3, error_event_after_chunks=1))
    r, chunks, error, done = stream(client, max_tokens=50)
    assert r.status_code == 200 and not done
    assert error is not None and error["code"] == "provider_overloaded" and error["message"] == "Overloaded"
    assert "".join(texts(chunks).values()) == ANSWER[:len(ANSWER) // 3]


def test_cut_stream(client, ant):
    ant.script(M, Reply(chunks=3, cut_after_chunks=1))
    r, chunks, error, done = stream(client, max_tokens=50)
    assert r.status_code == 200 and not done
    assert error is not None and error["code"] == "provider_error" and f"ant/{M}" in error["message"]
    assert "".join(texts(chunks).values()) == ANSWER[:len(ANSWER) // 3]


@pytest.mark.parametrize("raw", [b"not json", b'{"id": "msg_1", "type": "message"}', b'{"type": "message"'])
def test_malformed_body_is_a_502_naming_the_provider(client, ant, raw):
    ant.script(M, Reply(raw_body=raw))
    r = post(client)
    assert r.status_code == 502
    error = r.json()["error"]
    assert error["code"] == "provider_error" and f"ant/{M}" in error["message"]


@pytest.mark.parametrize("raw", [b"data: nonsense\n\n", b'event: content_block_delta\ndata: {"type": "x"}\n\n'])
def test_malformed_stream_is_a_502(client, ant, raw):
    ant.script(M, Reply(raw_body=raw))
    r, _, _, _ = stream(client)
    assert r.status_code == 502 and f"ant/{M}" in r.json()["error"]["message"]


# -- fallback across providers ----------------------------------------------------------------------------------
@pytest.mark.parametrize("streamed", [False, True], ids=["json", "stream"])
def test_fallback_anthropic_to_openai_and_back(client, ant, upstream, streamed):
    ant.script(M, Reply(status=529))
    upstream.script("m", OpenAIReply(status=500))
    fields = {"model": f"ant/{M}", "fallbacks": [{"model": "emu/m"}, {"model": f"ant/{EXCLUSIVE}"}],
              "max_tokens": 50}
    if streamed:
        r, chunks, error, done = stream(client, **fields)
        assert done and error is None and texts(chunks) == {0: ANSWER}
    else:
        r = post(client, **fields)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["text"] == ANSWER
    assert r.headers["x-switchyard-model"] == f"ant/{EXCLUSIVE}"
    assert [q.model for q in ant.requests] == [M, EXCLUSIVE]
    assert [q.model for q in upstream.requests] == ["m"]


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "stream"])
def test_fallback_openai_to_anthropic(client, ant, upstream, streamed):
    upstream.script("m", OpenAIReply(status=503))
    fields = {"model": "emu/m", "fallbacks": [{"model": f"ant/{M}"}], "max_tokens": 50}
    if streamed:
        r, chunks, error, done = stream(client, **fields)
        assert done and error is None and texts(chunks) == {0: ANSWER}
    else:
        r = post(client, **fields)
        assert r.json()["choices"][0]["text"] == ANSWER
    assert r.headers["x-switchyard-model"] == f"ant/{M}"
    # The OpenAI emulator got the raw prompt; Anthropic the same prompt as one user message.
    assert upstream.requests[0].body["prompt"] == PROMPT
    assert sent(ant)[0]["messages"] == [{"role": "user", "content": PROMPT}]


# -- both SDKs --------------------------------------------------------------------------------------------------
def test_openai_sdk(proxy, ant):
    with openai.OpenAI(api_key=KEY_A, base_url=proxy.url + "/v2/router", max_retries=0) as oai:
        res = oai.completions.create(model=f"ant/{M}", prompt=PROMPT, max_tokens=50, n=2, stop=["three"])
        assert [(c.index, c.text, c.finish_reason) for c in res.choices] == [
            (0, "Echo: one two ", "stop"), (1, "Echo: one two ", "stop")]
        assert res.usage is not None and res.usage.completion_tokens == 6
        chunks = list(oai.completions.create(model=f"ant/{M}", prompt=PROMPT, max_tokens=50, stream=True))
        assert "".join(c.choices[0].text for c in chunks if c.choices) == ANSWER
        assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 7
        ant.script(M, Reply(status=529))
        with pytest.raises(openai.InternalServerError) as caught:
            oai.completions.create(model=f"ant/{M}", prompt=PROMPT)
        assert caught.value.status_code == 503 and caught.value.code == "provider_overloaded"


def test_orq_sdk(proxy, ant):
    """The orq SDK sends its defaults (max_tokens 16, temperature 1, top_p 1) explicitly."""
    with Orq(api_key=KEY_A, server_url=proxy.url) as orq:
        res = orq.router.completions.create(model=f"ant/{EXCLUSIVE}", prompt=PROMPT)
        assert res.choices[0].text == ANSWER and res.choices[0].finish_reason == "stop"
        assert res.usage is not None and res.usage.total_tokens == 7
        events = list(orq.router.completions.create(model=f"ant/{EXCLUSIVE}", prompt=PROMPT, max_tokens=50,
                                                    stream=True, thinking={"type": "adaptive"}))
        assert "".join(e.data.choices[0].text for e in events) == ANSWER
    first, second = sent(ant)
    assert "temperature" not in first and "top_p" not in first and first["max_tokens"] == 16
    assert second["thinking"] == {"type": "adaptive"}


# -- the chat surface -------------------------------------------------------------------------------------------
CHAT = "/v2/router/chat/completions"
TURNS = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"},
         {"role": "assistant", "content": "hi"}, {"role": "user", "content": PROMPT}]


def test_chat_turns_system_and_default_max_tokens(client, ant):
    r = client.post(CHAT, json={"model": f"ant/{M}", "messages": TURNS,
                                "thinking": {"type": "enabled", "budget_tokens": 1024}})
    assert r.status_code == 200, r.text
    message = r.json()["choices"][0]["message"]
    assert message["content"] == ANSWER
    assert message["reasoning"] == f"Thinking about: {PROMPT}" and message["reasoning_signature"]
    body = sent(ant)[0]
    # No spec default for a chat's max_tokens: 4096, so a budget of 1024 fits without one.
    assert body["max_tokens"] == 4096 and body["system"] == "be brief"
    assert body["messages"] == [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"},
                                {"role": "user", "content": PROMPT}]


@pytest.mark.parametrize(("effort", "thinking", "max_tokens"), [
    ("low", {"type": "enabled", "budget_tokens": 2048}, 2048 + 4096),
    ("high", {"type": "enabled", "budget_tokens": 16384}, 16384 + 4096),
    ("none", None, 4096),
])
def test_reasoning_effort_becomes_a_thinking_budget(client, ant, effort, thinking, max_tokens):
    """docs/providers.md's effort table; an unset max_tokens leaves the answer room past the budget."""
    r = client.post(CHAT, json={"model": f"ant/{M}", "messages": TURNS[1:2], "reasoning_effort": effort})
    assert r.status_code == 200, r.text
    body = sent(ant)[0]
    assert body.get("thinking") == thinking and body["max_tokens"] == max_tokens
    assert r.json()["choices"][0]["message"]["content"] == "Echo: hello"


def test_chat_stream_relays_reasoning_before_the_answer(client, ant):
    ant.script(M, Reply(chunks=2))
    with client.stream("POST", CHAT, json={"model": f"ant/{M}", "messages": TURNS[1:2], "stream": True,
                                           "max_tokens": 2000, "thinking": {"type": "adaptive"}}) as r:
        raw = r.read().decode()
    assert r.status_code == 200, raw
    events = [json.loads(e[len("data: "):]) for e in raw.split("\n\n") if e and e != "data: [DONE]"]
    deltas = [c["choices"][0]["delta"] for c in events if c.get("choices")]
    reasoning = "".join(d.get("reasoning") or "" for d in deltas)
    content = "".join(d.get("content") or "" for d in deltas)
    assert reasoning == "Thinking about: hello" and content == "Echo: hello"
    first_reasoning = next(i for i, d in enumerate(deltas) if d.get("reasoning"))
    first_content = next(i for i, d in enumerate(deltas) if d.get("content"))
    assert first_reasoning < first_content


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
PARIS = {"name": "get_weather", "input": {"city": "Paris", "unit": "C"}}


@pytest.fixture()
def oai_v1(proxy: ProxyProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key=KEY_A, base_url=proxy.url + "/v1", max_retries=0) as client:
        yield client


@pytest.mark.parametrize("streamed", [False, True])
def test_tool_call_round_trip(oai_v1, ant, streamed):
    """The openai SDK's tool loop against a Claude model: tools and tool_choice go out in
    Anthropic's shape, tool_use comes back as tool_calls (arguments streamed in pieces), and the
    call and its result go back as tool_use and tool_result blocks."""
    ant.script(M, Reply(text="", tool_use=PARIS, chunks=3), Reply())
    messages: list[dict] = [{"role": "user", "content": "weather in Paris"}]
    if streamed:
        chunks = list(oai_v1.chat.completions.create(model=f"ant/{M}", messages=messages, tools=[WEATHER],
                                                     tool_choice="required", stream=True))
        pieces = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
        assert {p.index for p in pieces} == {0}
        call_id = next(p.id for p in pieces if p.id)
        name = next(p.function.name for p in pieces if p.function and p.function.name)
        arguments = "".join(p.function.arguments or "" for p in pieces if p.function)
        assert len([p for p in pieces if p.function and p.function.arguments]) > 1  # incremental
        assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == \
            ["tool_calls"]
    else:
        res = oai_v1.chat.completions.create(model=f"ant/{M}", messages=messages, tools=[WEATHER],
                                             tool_choice="required")
        assert res.choices[0].finish_reason == "tool_calls" and len(res.choices[0].message.tool_calls) == 1
        call = res.choices[0].message.tool_calls[0]
        call_id, name, arguments = call.id, call.function.name, call.function.arguments
    assert call_id.startswith("toolu_") and name == "get_weather"
    assert json.loads(arguments) == {"city": "Paris", "unit": "C"}
    first = sent(ant)[0]
    assert first["tools"] == [{"name": "get_weather", "description": "Weather for a city",
                               "input_schema": WEATHER["function"]["parameters"]}]
    assert first["tool_choice"] == {"type": "any"}
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": call_id, "content": "sunny, 21C"},
    ]
    res = oai_v1.chat.completions.create(model=f"ant/{M}", messages=messages, tools=[WEATHER])
    assert res.choices[0].message.content == "Echo: sunny, 21C" and res.choices[0].finish_reason == "stop"
    second = sent(ant)[1]
    assert "tool_choice" not in second
    assert second["messages"][1:] == [
        {"role": "assistant", "content": [{"type": "tool_use", "id": call_id, "name": "get_weather",
                                           "input": {"city": "Paris", "unit": "C"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id, "content": "sunny, 21C"}]},
    ]


def test_parallel_tool_results_share_one_user_turn(client, ant):
    """Two calls answered by two tool messages: one user turn with both results (Anthropic wants
    every result of a turn's calls in the next message); a named choice and
    parallel_tool_calls false become tool_choice {type: tool, disable_parallel_tool_use}."""
    calls = [{"id": f"toolu_{i}", "type": "function", "function": {"name": "get_weather",
                                                                  "arguments": json.dumps({"city": city})}}
             for i, city in enumerate(("Paris", "Oslo"))]
    r = client.post(CHAT, json={
        "model": f"ant/{M}", "tools": [WEATHER], "parallel_tool_calls": False,
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "messages": [{"role": "user", "content": "Paris and Oslo?"},
                     {"role": "assistant", "content": "Looking both up.", "tool_calls": calls},
                     {"role": "tool", "tool_call_id": "toolu_0", "content": "sunny"},
                     {"role": "tool", "tool_call_id": "toolu_1", "content": "rain"}]})
    assert r.status_code == 200, r.text
    body = sent(ant)[0]
    assert body["tool_choice"] == {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}
    assert body["messages"][1]["content"] == [
        {"type": "text", "text": "Looking both up."},
        {"type": "tool_use", "id": "toolu_0", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}]
    assert body["messages"][2:] == [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_0", "content": "sunny"},
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "rain"}]}]
    assert r.json()["choices"][0]["message"]["content"] == "Echo: sunnyrain"


def test_streamed_call_without_arguments_gets_an_empty_object(client, ant):
    """Anthropic streams no input_json_delta for a call that takes no arguments; the client still
    gets arguments it can parse, `{}`, after the text that came before the call."""
    events = [
        {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": M,
                                              "content": [], "usage": {"input_tokens": 3, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Checking."}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1,
         "content_block": {"type": "tool_use", "id": "toolu_9", "name": "now", "input": {}}},
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 5}},
        {"type": "message_stop"},
    ]
    ant.script(M, Reply(raw_body=b"".join(b"event: " + e["type"].encode() + b"\ndata: " + json.dumps(e).encode()
                                          + b"\n\n" for e in events)))
    now = {"type": "function", "function": {"name": "now"}}
    with client.stream("POST", CHAT, json={"model": f"ant/{M}", "messages": TURNS[1:2], "tools": [now],
                                           "stream": True}) as r:
        raw = r.read().decode()
    assert r.status_code == 200, raw
    chunks = [json.loads(e[len("data: "):]) for e in raw.split("\n\n") if e and e != "data: [DONE]"]
    deltas = [c["choices"][0]["delta"] for c in chunks if c.get("choices")]
    calls = [tc for d in deltas for tc in d.get("tool_calls") or ()]
    assert "".join(d.get("content") or "" for d in deltas) == "Checking."
    assert calls[0]["id"] == "toolu_9" and calls[0]["function"]["name"] == "now"
    assert "".join(c["function"].get("arguments") or "" for c in calls) == "{}"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"][0]["finish_reason"]] == ["tool_calls"]
    assert sent(ant)[0]["tools"] == [{"name": "now", "input_schema": {"type": "object", "properties": {}}}]


@pytest.mark.parametrize(("extra", "param"), [
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}}}},
     "response_format"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"tools": [WEATHER], "tool_choice": "required", "thinking": {"type": "adaptive"}}, "tool_choice"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [
        {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "[1]"}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "x"}], "tools": [WEATHER]},
     "messages[1].tool_calls[0].function.arguments"),
])
def test_chat_requests_anthropic_cannot_take_are_refused_by_name(client, ant, extra, param):
    r = client.post(CHAT, json={"model": f"ant/{M}", "messages": TURNS[1:2], **extra})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    assert ant.requests == []


def test_openai_sdk_chat(proxy, ant):
    with openai.OpenAI(api_key=KEY_A, base_url=proxy.url + "/v2/router", max_retries=0) as oai:
        res = oai.chat.completions.create(model=f"ant/{M}", messages=TURNS, max_tokens=50)  # type: ignore[arg-type]
        assert res.choices[0].message.content == ANSWER and res.choices[0].finish_reason == "stop"
        chunks = list(oai.chat.completions.create(model=f"ant/{M}", messages=TURNS, stream=True,  # type: ignore[arg-type]
                                                  stream_options={"include_usage": True}))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
