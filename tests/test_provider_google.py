"""`type: google` (Gemini) behind the completions surface, over real sockets: the proxy in front
of the Gemini emulator and the OpenAI emulator (docs/providers.md, "Google Gemini")."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import httpx
import msgspec
import openai
import pytest
from orq_ai_sdk import Orq

from proxy.config import ProviderConfig
from proxy.core.errors import ProxyError
from proxy.core.model import ChatRequest, Message, assemble
from proxy.core.target import Target
from proxy.providers.google import wire
from proxy.providers.google.connector import GoogleConnector
from proxy.providers.google.stream import DeltaDecoder
from proxy.providers.google.translate import result_of
from tests.completion_sse import chunks_and_error, parse_sse, texts
from tests.conftest import KEY_A, proxy_config
from tests.emulators.base import pieces
from tests.emulators.google_server import GoogleEmulator, Reply, google_error, responses
from tests.emulators.openai_server import OpenAIEmulator
from tests.emulators.openai_server import Reply as OpenAIReply
from tests.proxy_process import ProxyProcess

URL = "/v2/router/completions"
GKEY = "AIza-upstream-0123456789"
FLASH = "gemini-2.5-flash"  # thinks, and can stop thinking
PRO = "gemini-2.5-pro"  # cannot stop thinking
G3 = "gemini-3-pro-preview"  # takes thinkingLevel
OLD = "gemini-2.0-flash"  # never thinks


@pytest.fixture(scope="module")
def gemini() -> Iterator[GoogleEmulator]:
    with GoogleEmulator(api_key=GKEY) as emu:
        yield emu


@pytest.fixture(scope="module")
def proxy(emulator: OpenAIEmulator, gemini: GoogleEmulator,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    providers = (f'  gem: {{type: google, base_url: "{gemini.base_url}", api_key: "{GKEY}"}}\n'
                 f'  gembad: {{type: google, base_url: "{gemini.base_url}", api_key: "AIza-wrong"}}\n'
                 f'  gemslow: {{type: google, base_url: "{gemini.base_url}", api_key: "{GKEY}", '
                 f'stream_idle_timeout_seconds: 0.5}}\n')
    config = proxy_config(emulator).replace("providers:\n", "providers:\n" + providers, 1)
    process = ProxyProcess(config, tmp_path_factory.mktemp("proxy-google"))
    process.start()
    yield process
    process.stop()


@pytest.fixture()
def google(gemini: GoogleEmulator) -> GoogleEmulator:
    gemini.reset()
    return gemini



def post(client: httpx.Client, **body: object) -> httpx.Response:
    body.setdefault("model", f"gem/{FLASH}")
    body.setdefault("prompt", "say hi")
    return client.post(URL, json=body)


def stream(client: httpx.Client, **body: object) -> tuple[httpx.Response, list[dict], dict | None, bool]:
    """A streamed request: the response, its chunks (each valid against the spec), the in-band
    error (if any), and whether it ended with [DONE]."""
    body.setdefault("model", f"gem/{FLASH}")
    body.setdefault("prompt", "say hi")
    with client.stream("POST", URL, json={**body, "stream": True}) as response:
        raw = response.read()
    if not response.headers["content-type"].startswith("text/event-stream"):
        return response, [], response.json()["error"], False
    payloads, done = parse_sse(raw)
    chunks, error = chunks_and_error(payloads)
    return response, chunks, error, done


def finishes(chunks: list[dict]) -> dict[int, str]:
    """Each choice's finish_reason on its last chunk."""
    out: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            out[choice["index"]] = choice["finish_reason"]
    return out


def sent(google: GoogleEmulator) -> dict:
    body = google.requests[-1].body
    assert body is not None
    return body


# -- the basics ------------------------------------------------------------------------------------------
def test_non_stream(client, google):
    r = post(client, prompt="one two three", max_tokens=50, temperature=0.3, top_p=0.9, seed=7,
             presence_penalty=0.5, frequency_penalty=-0.5, user="jane")
    assert r.status_code == 200, r.text
    body = r.json()
    assert [c["text"] for c in body["choices"]] == ["Echo: one two three"]
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["object"] == "text_completion" and body["model"] == FLASH
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    recorded = google.requests[-1]
    assert recorded.path == f"/v1beta/models/{FLASH}:generateContent"
    assert recorded.headers["x-goog-api-key"] == GKEY
    assert "authorization" not in recorded.headers
    assert sent(google) == {
        "contents": [{"parts": [{"text": "one two three"}], "role": "user"}],
        "generationConfig": {"maxOutputTokens": 50, "temperature": 0.3, "topP": 0.9, "seed": 7,
                             "presencePenalty": 0.5, "frequencyPenalty": -0.5},
    }  # `user` is dropped: Gemini has no such field


def test_spec_defaults_are_not_sent_as_extra_config(client, google):
    r = post(client, n=1, echo=False, presence_penalty=0, frequency_penalty=0)
    assert r.status_code == 200, r.text
    assert "generationConfig" not in sent(google)


def test_stream(client, google):
    google.script(FLASH, Reply(text="héllo wörld ✓ 日本 again", chunks=4))
    r, chunks, error, done = stream(client, max_tokens=3)
    assert r.status_code == 200 and done and error is None
    assert texts(chunks) == {0: "héllo wörld ✓"}
    assert finishes(chunks) == {0: "length"}  # MAX_TOKENS
    assert chunks[-1]["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
    assert all("usage" not in c for c in chunks[:-1])
    recorded = google.requests[-1]
    assert recorded.path == f"/v1beta/models/{FLASH}:streamGenerateContent"
    assert recorded.query == {"alt": "sse"}


def test_n_is_candidate_count(client, google):
    r = post(client, prompt="a b", n=3)
    assert r.status_code == 200, r.text
    assert [(c["index"], c["text"]) for c in r.json()["choices"]] == [
        (0, "Echo: a b"), (1, "Echo: a b (1)"), (2, "Echo: a b (2)")]
    assert len(google.requests) == 1
    assert sent(google)["generationConfig"] == {"candidateCount": 3}


def test_n_streamed(client, google):
    _, chunks, error, done = stream(client, prompt="a b", n=2)
    assert done and error is None
    assert texts(chunks) == {0: "Echo: a b", 1: "Echo: a b (1)"}
    assert finishes(chunks) == {0: "stop", 1: "stop"}
    assert chunks[-1]["usage"]["completion_tokens"] == 7


def test_n_above_eight_is_split_over_calls(client, google):
    r = post(client, prompt="x", n=10)
    assert r.status_code == 200, r.text
    choices = r.json()["choices"]
    assert [c["index"] for c in choices] == list(range(10))
    assert choices[8]["text"] == "Echo: x" and choices[9]["text"] == "Echo: x (1)"
    assert sorted(q.body["generationConfig"]["candidateCount"] for q in google.requests) == [2, 8]


def test_prompt_list_is_served_prompt_by_prompt(client, google):
    r = post(client, prompt=["first one", "second"], n=2)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(c["index"], c["text"]) for c in body["choices"]] == [
        (0, "Echo: first one"), (1, "Echo: first one (1)"), (2, "Echo: second"), (3, "Echo: second (1)")]
    assert sorted(q.body["contents"][0]["parts"][0]["text"] for q in google.requests) == ["first one", "second"]
    assert body["usage"]["prompt_tokens"] == 3  # summed over the two calls


def test_prompt_list_streamed(client, google):
    _, chunks, error, done = stream(client, prompt=["a", "b"])
    assert done and error is None
    assert texts(chunks) == {0: "Echo: a", 1: "Echo: b"}
    assert chunks[-1]["usage"] == {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6}


def test_echo(client, google):
    r = post(client, prompt="repeat me", echo=True)
    assert r.json()["choices"][0]["text"] == "repeat meEcho: repeat me"
    assert "echo" not in json.dumps(sent(google))
    _, chunks, _, done = stream(client, prompt="repeat me", echo=True)
    assert done and texts(chunks) == {0: "repeat meEcho: repeat me"}


def test_stop(client, google):
    google.script(FLASH, Reply(text="alpha beta. gamma delta"))
    r = post(client, stop=[".", "zzz"])
    assert r.json()["choices"][0]["text"] == "alpha beta"
    assert sent(google)["generationConfig"] == {"stopSequences": [".", "zzz"]}
    post(client, stop="\n")
    assert sent(google)["generationConfig"] == {"stopSequences": ["\n"]}


def test_more_than_five_stop_sequences_is_refused_before_any_call(client, google):
    # The completions spec itself allows 4, so the surface refuses first; a chat surface may allow
    # more, and Gemini takes at most 5: the connector's own check is exercised directly.
    r = post(client, stop=["a", "b", "c", "d", "e", "f"])
    assert r.status_code == 400 and r.json()["error"]["param"] == "stop"
    assert google.requests == []
    connector = GoogleConnector("gem", ProviderConfig(type="google", base_url="http://x"))
    six = ChatRequest(messages=[Message("user", "hi")], stop=list("abcdef"))
    with pytest.raises(ProxyError) as caught:
        connector.check(six, Target("gem", FLASH))
    err = caught.value
    assert err.status == 400 and err.param == "stop" and "'gem'" in err.message and "at most 5" in err.message
    connector.check(msgspec.structs.replace(six, stop=list("abcde")), Target("gem", FLASH))


def test_extras_are_refused_naming_the_field(client, google):
    r = post(client, logprobs=2)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "logprobs" and "'gem'" in r.json()["error"]["message"]
    assert google.requests == []


# -- thinking --------------------------------------------------------------------------------------------
def thinking_config(google: GoogleEmulator) -> dict | None:
    return sent(google).get("generationConfig", {}).get("thinkingConfig")


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "sse"])
def test_thinking_enabled_sends_a_budget_and_keeps_thoughts_out_of_the_text(client, google, streamed):
    google.script(FLASH, Reply(thinking="I ponder deeply here", text="the answer"))
    body = {"prompt": "q", "max_tokens": 2000, "thinking": {"type": "enabled", "budget_tokens": 1024}}
    if streamed:
        _, chunks, error, done = stream(client, **body)
        assert done and error is None
        text, usage = texts(chunks)[0], chunks[-1]["usage"]
    else:
        r = post(client, **body)
        assert r.status_code == 200, r.text
        text, usage = r.json()["choices"][0]["text"], r.json()["usage"]
    assert thinking_config(google) == {"thinkingBudget": 1024, "includeThoughts": True}
    assert text == "the answer"  # no thought text, no signature
    assert usage == {"prompt_tokens": 1, "completion_tokens": 6, "total_tokens": 7,
                     "completion_tokens_details": {"reasoning_tokens": 4}}


def test_thinking_adaptive_is_the_dynamic_budget(client, google):
    r = post(client, thinking={"type": "adaptive"})
    assert r.status_code == 200, r.text
    assert thinking_config(google) == {"thinkingBudget": -1, "includeThoughts": True}
    assert r.json()["choices"][0]["text"] == "Echo: say hi"
    assert r.json()["usage"]["completion_tokens_details"] == {"reasoning_tokens": 4}


def test_thinking_level_alone_where_the_model_takes_it(client, google):
    thinking = {"type": "enabled", "budget_tokens": 2048, "thinking_level": "high"}
    r = post(client, model=f"gem/{G3}", thinking=thinking)
    assert r.status_code == 200, r.text
    assert thinking_config(google) == {"thinkingLevel": "high", "includeThoughts": True}
    assert r.json()["choices"][0]["text"] == "Echo: say hi"
    # A model without levels gets the budget instead (Gemini refuses a level there).
    r = post(client, thinking=thinking)
    assert r.status_code == 200, r.text
    assert thinking_config(google) == {"thinkingBudget": 2048, "includeThoughts": True}


@pytest.mark.parametrize(("model", "expected"), [(FLASH, {"thinkingBudget": 0}), (PRO, None), (OLD, None)],
                         ids=["can-stop", "always-thinks", "never-thinks"])
def test_thinking_disabled_is_budget_zero_where_the_model_allows_it(client, google, model, expected):
    r = post(client, model=f"gem/{model}", thinking={"type": "disabled"})
    assert r.status_code == 200, r.text
    assert thinking_config(google) == expected
    assert "completion_tokens_details" not in r.json()["usage"]


@pytest.mark.parametrize("thinking", [{"type": "adaptive"}, {"type": "enabled", "budget_tokens": 1024}],
                         ids=["adaptive", "enabled"])
def test_thinking_on_a_model_without_thinking_is_a_400_before_any_call(client, google, thinking):
    r = post(client, model=f"gem/{OLD}", thinking=thinking)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "thinking" and "'gem'" in r.json()["error"]["message"]
    assert google.requests == []


def test_thinking_budget_must_be_below_max_tokens(client, google):
    r = post(client, max_tokens=1024, thinking={"type": "enabled", "budget_tokens": 1024})
    assert r.status_code == 400 and r.json()["error"]["param"] == "thinking.budget_tokens"
    assert google.requests == []


# -- safety ----------------------------------------------------------------------------------------------
def test_blocked_prompt_is_content_filter(client, google):
    google.script(FLASH, Reply(block_reason="SAFETY"))
    r = post(client, n=2)
    assert r.status_code == 200, r.text
    assert [(c["index"], c["text"], c["finish_reason"]) for c in r.json()["choices"]] == [
        (0, "", "content_filter"), (1, "", "content_filter")]
    _, chunks, error, done = stream(client)
    assert done and error is None
    assert finishes(chunks) == {0: "content_filter"} and texts(chunks) == {0: ""}


@pytest.mark.parametrize("reason", ["SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII",
                                    "IMAGE_SAFETY"])
def test_filtered_finish_reasons(client, google, reason):
    google.script(FLASH, Reply(text="partial", finish_reason=reason))
    r = post(client)
    assert r.json()["choices"][0]["finish_reason"] == "content_filter"
    _, chunks, _, done = stream(client)
    assert done and finishes(chunks) == {0: "content_filter"}


# -- errors ----------------------------------------------------------------------------------------------
def test_429_is_retried_honouring_retry_info(client, google):
    retry_info = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.4s"}
    error = google_error(429, "Quota exceeded for metric generate_content")
    error["error"]["details"] = [retry_info]
    google.script(FLASH, Reply(status=429, error_body=error), Reply())
    r = post(client, retry={"count": 1, "on_codes": [429]})
    assert r.status_code == 200, r.text
    first, second = google.requests
    assert second.received_at - first.received_at >= 0.35
    google.reset()
    google.script(FLASH, Reply(status=429, error_body=error))
    r = post(client)
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "rate_limit_exceeded"
    assert r.json()["error"]["message"] == "Quota exceeded for metric generate_content"


@pytest.mark.parametrize(("status", "code", "type_"), [(500, "provider_error", "api_error"),
                                                       (503, "provider_overloaded", "api_error"),
                                                       (400, "provider_error", "invalid_request_error")])
@pytest.mark.parametrize("streamed", [False, True], ids=["json", "sse"])
def test_error_status_keeps_status_and_message(client, google, status, code, type_, streamed):
    google.script(FLASH, Reply(status=status, error_body=google_error(status, f"gemini says {status}")))
    if streamed:
        r, _, error, _ = stream(client)
    else:
        r = post(client)
        error = r.json()["error"]
    assert r.status_code == status
    assert error is not None
    assert (error["message"], error["code"], error["type"]) == (f"gemini says {status}", code, type_)


def test_wrong_upstream_key_is_the_proxys_problem_not_the_clients(client, google):
    r = post(client, model=f"gembad/{FLASH}")
    assert r.status_code == 502, r.text
    assert "credentials" in r.json()["error"]["message"] and "gembad" in r.json()["error"]["message"]


def test_error_event_after_the_first_chunk(client, google):
    google.script(FLASH, Reply(text="one two three four", chunks=4, error_event_after_chunks=2,
                               error_body=google_error(500, "model crashed mid-way")))
    r, chunks, error, done = stream(client)
    assert r.status_code == 200 and not done
    assert error is not None and error["message"] == "model crashed mid-way" and error["type"] == "api_error"
    assert texts(chunks) == {0: "".join(pieces("one two three four", 4)[:2])}


def test_error_event_before_any_content_can_fall_back(client, google, emulator):
    emulator.reset()
    google.script(FLASH, Reply(error_event_after_chunks=0, error_body=google_error(503)))
    r, chunks, error, done = stream(client, fallbacks=[{"model": "emu/m"}])
    assert done and error is None, error
    assert texts(chunks) == {0: "Hello from the emulator"}
    assert r.headers["x-switchyard-model"] == "emu/m"


def test_cut_stream(client, google):
    google.script(FLASH, Reply(text="one two three four", chunks=4, cut_after_chunks=2))
    r, chunks, error, done = stream(client)
    assert r.status_code == 200 and not done
    assert error is not None and error["code"] == "provider_error" and "gem/" in error["message"]
    assert texts(chunks) == {0: "".join(pieces("one two three four", 4)[:2])}


@pytest.mark.parametrize("raw", [b"not json at all", b'{"candidates": "nope"}', b"{}",
                                 b'{"candidates":[{"content":{"parts":[{"text":5}]}}]}'],
                         ids=["not-json", "wrong-type", "empty-object", "bad-part"])
def test_malformed_body_is_a_502(client, google, raw):
    google.script(FLASH, Reply(raw_body=raw))
    r = post(client)
    assert r.status_code == 502, r.text
    assert r.json()["error"]["type"] == "api_error" and "gem/" in r.json()["error"]["message"]


@pytest.mark.parametrize("raw", [b"data: not json\r\n\r\n", b'data: {"candidates": 3}\r\n\r\n',
                                 b'data: {"candidates":[{"content":{"parts":[{"text":"half"}]}}]}\r\n\r\n'],
                         ids=["not-json", "wrong-type", "never-finishes"])
def test_malformed_stream_is_a_502(client, google, raw):
    google.script(FLASH, Reply(raw_body=raw))
    r, chunks, error, done = stream(client)
    assert error is not None and "gem/" in error["message"], error
    assert not done
    if not chunks:
        assert r.status_code == 502


# -- fallback across providers ---------------------------------------------------------------------------
@pytest.mark.parametrize("streamed", [False, True], ids=["json", "sse"])
def test_fallback_google_to_openai_and_back(client, google, emulator, streamed):
    emulator.reset()
    google.script(FLASH, Reply(status=500))
    emulator.script("down", OpenAIReply(status=500))
    google.script("gemini-2.5-flash-lite", Reply(text="served by gemini"))
    call = stream if streamed else post
    out = call(client, fallbacks=[{"model": "emu/m"}])
    r = out[0] if streamed else out
    assert r.status_code == 200 and r.headers["x-switchyard-model"] == "emu/m"
    text = texts(out[1])[0] if streamed else r.json()["choices"][0]["text"]
    assert text == "Hello from the emulator"
    out = call(client, model="emu/down", fallbacks=[{"model": "gem/gemini-2.5-flash-lite"}])
    r = out[0] if streamed else out
    assert r.status_code == 200 and r.headers["x-switchyard-model"] == "gem/gemini-2.5-flash-lite"
    text = texts(out[1])[0] if streamed else r.json()["choices"][0]["text"]
    assert text == "served by gemini"
    assert [q.model for q in google.requests] == [FLASH, "gemini-2.5-flash-lite"]
    assert [q.model for q in emulator.requests] == ["m", "down"]


def test_a_refused_field_on_a_google_fallback_is_a_400_before_any_call(client, google, emulator):
    emulator.reset()
    r = post(client, model="emu/m", stop=list("abcdef"), fallbacks=[{"model": f"gem/{FLASH}"}])
    assert r.status_code == 400 and r.json()["error"]["param"] == "stop"
    assert emulator.requests == [] and google.requests == []


def test_cache_serves_a_gemini_stream_as_json(client, google):
    prompt = f"cache me {uuid.uuid4().hex}"
    _, chunks, _, done = stream(client, prompt=prompt, cache={"type": "exact_match", "ttl": 60})
    assert done
    r = post(client, prompt=prompt, cache={"type": "exact_match", "ttl": 60})
    assert r.json()["choices"][0]["text"] == texts(chunks)[0] == f"Echo: {prompt}"
    assert len(google.requests) == 1


# -- the SDKs --------------------------------------------------------------------------------------------
def test_openai_sdk(proxy, google):
    with openai.OpenAI(api_key=KEY_A, base_url=proxy.url + "/v2/router", max_retries=0) as oai:
        res = oai.completions.create(model=f"gem/{FLASH}", prompt="hi there", max_tokens=20, n=2, stop=["\n"])
        assert [c.text for c in res.choices] == ["Echo: hi there", "Echo: hi there (1)"]
        assert res.usage is not None and res.usage.total_tokens == 2 + 3 + 4
        chunks = list(oai.completions.create(model=f"gem/{FLASH}", prompt="hi there", stream=True,
                                             extra_body={"thinking": {"type": "enabled", "budget_tokens": 1024}}))
        assert "".join(c.choices[0].text for c in chunks if c.choices) == "Echo: hi there"
        usage = chunks[-1].usage
        assert usage is not None and usage.completion_tokens_details is not None
        assert usage.completion_tokens_details.reasoning_tokens == 4
        google.script(FLASH, Reply(status=503))
        with pytest.raises(openai.InternalServerError) as caught:
            oai.completions.create(model=f"gem/{FLASH}", prompt="hi")
        assert caught.value.status_code == 503 and caught.value.code == "provider_overloaded"


def test_orq_sdk(proxy, google):
    with Orq(api_key=KEY_A, server_url=proxy.url) as orq:
        res = orq.router.completions.create(model=f"gem/{FLASH}", prompt="hi there", max_tokens=20,
                                            thinking={"type": "adaptive"})
        assert res.choices[0].text == "Echo: hi there" and res.choices[0].finish_reason == "stop"
        assert res.usage is not None and res.usage.total_tokens == 2 + 3 + 4
        events = list(orq.router.completions.create(model=f"gem/{FLASH}", prompt="hi there", stream=True))
        chunks = [e.data for e in events if e.data is not None]
        assert "".join(c.choices[0].text for c in chunks if c.choices) == "Echo: hi there"
    assert thinking_config(google) is None
    assert google.requests[0].body["generationConfig"]["thinkingConfig"] == {"thinkingBudget": -1,
                                                                            "includeThoughts": True}


def test_no_upstream_key_in_the_log(proxy, client, google):
    post(client, model=f"gembad/{FLASH}")
    post(client)
    assert GKEY not in proxy.log() and "AIza-wrong" not in proxy.log()
    assert "gembad" in proxy.log()  # the log is written, and names the provider instead


def test_a_model_id_with_geminis_models_prefix(client, google):
    r = post(client, model=f"gem/models/{FLASH}")
    assert r.status_code == 200, r.text
    assert google.requests[-1].path == f"/v1beta/models/{FLASH}:generateContent"


def test_a_silent_stream_is_cut_by_the_idle_timeout(client, google, emulator):
    emulator.reset()
    google.script(FLASH, Reply(delay_s=1.5))  # silent before anything: a timeout that may fall back
    r, chunks, error, done = stream(client, model=f"gemslow/{FLASH}", fallbacks=[{"model": "emu/m"}])
    assert done and error is None and texts(chunks) == {0: "Hello from the emulator"}
    assert r.headers["x-switchyard-model"] == "emu/m"
    google.script(FLASH, Reply(text="one two three", chunks=3, chunk_delay_s=1.5))  # silent after content
    r, chunks, error, done = stream(client, model=f"gemslow/{FLASH}")
    assert r.status_code == 200 and not done
    assert error is not None and error["code"] == "provider_timeout", error
    assert texts(chunks) == {0: "one "}


# -- the translation itself, on what the emulator sends ------------------------------------------------------
def test_thoughts_and_signatures_become_reasoning_not_text():
    body = {"contents": [{"role": "user", "parts": [{"text": "q"}]}],
            "generationConfig": {"candidateCount": 2,
                                 "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True}}}
    reply = Reply(thinking="deep thought here", text="the answer")
    target = Target("gem", FLASH)
    whole = result_of(msgspec.json.decode(json.dumps(responses(reply, body, FLASH, False)[0]),
                                          type=wire.GenerateContentResponse), target, 2, "rid")
    decoder = DeltaDecoder(target, 2, "rid")
    decoder.feed([json.dumps(chunk).encode() for chunk in responses(reply, body, FLASH, True)])
    decoder.end()
    assert decoder.head is not None
    streamed = assemble(decoder.head, decoder.take())
    for result in (whole, streamed):
        assert [c.text for c in result.choices] == ["the answer", "the answer"]
        assert [c.reasoning for c in result.choices] == ["deep thought here"] * 2
        assert all(c.reasoning_signature for c in result.choices)
        assert result.choices[0].reasoning_signature != result.choices[1].reasoning_signature
        assert result.usage is not None and result.usage.reasoning_tokens == 6
        assert (result.usage.completion_tokens, result.usage.total_tokens) == (10, 11)
