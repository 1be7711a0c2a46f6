"""Tests for the OpenAI wire-format emulator used by the proxy's test suite."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.emulators.openai_server import OpenAIEmulator, Reply

TEXT = "héllo wörld ✓ 日本"
DEFAULT = Reply.text
KEYS = ["id", "object", "created", "model", "system_fingerprint", "choices", "usage"]


@pytest.fixture
def emu() -> Iterator[OpenAIEmulator]:
    with OpenAIEmulator() as e:
        yield e


@pytest.fixture
def client(emu: OpenAIEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.base_url, timeout=5.0) as c:
        yield c


class SSEParser:
    """Tiny incremental SSE parser; bytes may split anywhere, even inside \\r\\n."""

    _EOL = re.compile(rb"\r\n|\r|\n")

    def __init__(self) -> None:
        self.buf = b""
        self.data: list[str] = []
        self.events: list[str] = []

    def feed(self, chunk: bytes) -> None:
        self.buf += chunk
        while (m := self._EOL.search(self.buf)) is not None:
            if m.group() == b"\r" and m.end() == len(self.buf):
                break  # might be the first half of \r\n; wait for more bytes
            line, self.buf = self.buf[: m.start()].decode(), self.buf[m.end() :]
            if line == "":
                if self.data:
                    self.events.append("\n".join(self.data))
                self.data = []
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                if name == "data":
                    self.data.append(value.removeprefix(" "))


def complete(client: httpx.Client, model: str, **body: Any) -> httpx.Response:
    return client.post("/completions", json={"model": model, **body})


def text0(r: httpx.Response) -> str:
    return r.json()["choices"][0]["text"]


def post_stream(client: httpx.Client, body: dict) -> tuple[list[bytes], SSEParser]:
    pieces: list[bytes] = []
    parser = SSEParser()
    with client.stream("POST", "/completions", json={"stream": True, **body}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for piece in r.iter_raw():
            pieces.append(piece)
            parser.feed(piece)
    return pieces, parser


def content_chunks(parser: SSEParser) -> list[dict]:
    chunks = [json.loads(e) for e in parser.events if e != "[DONE]"]
    return [c for c in chunks if c.get("choices")]


def test_non_stream_shape(emu: OpenAIEmulator, client: httpx.Client) -> None:
    reply = Reply(
        text=TEXT, finish_reason="length", prompt_tokens=3, completion_tokens=4
    )
    emu.script("m1", reply)
    r = complete(client, "m1", prompt="hi")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["x-request-id"].startswith("req_")
    assert int(r.headers["openai-processing-ms"]) >= 0
    body = r.json()
    assert list(body) == KEYS
    assert body["id"].startswith("cmpl-")
    assert body["object"] == "text_completion"
    assert isinstance(body["created"], int)
    assert body["model"] == "m1"
    choice = {"text": TEXT, "index": 0, "logprobs": None, "finish_reason": "length"}
    assert body["choices"] == [choice]
    usage = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert body["usage"] == usage
    assert TEXT.encode() in r.content  # raw UTF-8, not \u escapes


def test_n_echo_and_list_prompt(client: httpx.Client) -> None:
    r = complete(client, "m", prompt=["a", "b"], n=2, echo=True)
    choices = r.json()["choices"]
    assert [c["index"] for c in choices] == [0, 1, 2, 3]
    expected = ["a" + DEFAULT, "a" + DEFAULT, "b" + DEFAULT, "b" + DEFAULT]
    assert [c["text"] for c in choices] == expected


def test_n_choices_in_stream(client: httpx.Client) -> None:
    _, parser = post_stream(client, {"model": "m", "prompt": "p", "n": 2})
    texts: dict[int, str] = {}
    for chunk in content_chunks(parser):
        (choice,) = chunk["choices"]
        texts[choice["index"]] = texts.get(choice["index"], "") + choice["text"]
    assert texts == {0: DEFAULT, 1: DEFAULT}


@pytest.mark.parametrize("crlf", [False, True])
def test_stream_reassembles_across_awkward_splits(
    emu: OpenAIEmulator, client: httpx.Client, crlf: bool
) -> None:
    emu.script("m", Reply(text=TEXT, chunks=5, crlf=crlf, comments=True))
    blob = b"".join(post_stream(client, {"model": "m", "prompt": "x"})[0])
    # Offsets found on a same-length stream: inside "data:", inside 3-byte chars,
    # and (with crlf) between \r and \n.
    cuts = {1, blob.index(b"data:") + 2}
    cuts |= {blob.index("日".encode()) + 1, blob.index("✓".encode()) + 2}
    if crlf:
        cuts.add(blob.index(b"\r\n") + 1)
    split = Reply(text=TEXT, chunks=5, crlf=crlf, comments=True, split_at=sorted(cuts))
    emu.script("m", split)
    pieces, parser = post_stream(client, {"model": "m", "prompt": "x"})
    received = b"".join(pieces)
    assert len(received) == len(blob)
    assert (b"\r\n" in received) == crlf
    ends = {sum(len(p) for p in pieces[: i + 1]) for i in range(len(pieces))}
    assert cuts <= ends  # one HTTP chunk per piece: the client saw each awkward cut
    assert parser.events[-1] == "[DONE]"
    assert parser.buf == b""
    chunks = content_chunks(parser)
    assert "".join(c["choices"][0]["text"] for c in chunks) == TEXT
    finishes = [c["choices"][0]["finish_reason"] for c in chunks]
    assert finishes == [None, None, None, None, "stop"]
    assert len({c["id"] for c in chunks}) == 1
    assert all("usage" not in c for c in chunks)


def test_usage_chunk_only_with_include_usage(client: httpx.Client) -> None:
    _, parser = post_stream(client, {"model": "m", "prompt": "x"})
    assert all("usage" not in json.loads(e) for e in parser.events[:-1])
    opts = {"include_usage": True}
    _, parser = post_stream(client, {"model": "m", "stream_options": opts})
    assert parser.events[-1] == "[DONE]"
    *content, last = [json.loads(e) for e in parser.events[:-1]]
    assert len(content) == Reply.chunks
    assert all(c["usage"] is None for c in content)
    assert last["choices"] == []
    usage = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
    assert last["usage"] == usage


def test_scripted_sequence_and_records(
    emu: OpenAIEmulator, client: httpx.Client
) -> None:
    emu.script("m", Reply(status=429, headers={"retry-after": "1"}), Reply(text="ok"))
    t0 = time.monotonic()
    body = {"model": "m", "prompt": "a"}
    r1 = client.post("/completions", json=body, headers={"X-Trace": "t1"})
    assert r1.status_code == 429
    assert r1.headers["retry-after"] == "1"
    assert r1.headers["content-type"].startswith("application/json")
    error = r1.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
    assert text0(complete(client, "m")) == "ok"
    assert text0(complete(client, "m")) == "ok"  # the last reply left repeats
    assert text0(complete(client, "other")) == DEFAULT  # unscripted model
    recs = emu.requests
    assert [r.model for r in recs] == ["m", "m", "m", "other"]
    assert {(r.method, r.path) for r in recs} == {("POST", "/v1/completions")}
    assert recs[0].body == body
    assert recs[0].headers["x-trace"] == "t1"
    assert t0 <= recs[0].received_at <= recs[1].received_at <= recs[3].received_at
    emu.reset()
    assert emu.requests == []
    assert text0(complete(client, "m")) == DEFAULT


def test_error_defaults_raw_body_and_models(
    emu: OpenAIEmulator, client: httpx.Client
) -> None:
    emu.script("boom", Reply(status=500))
    emu.script("junk", Reply(raw_body=b"{not json"))
    emu.script("empty", Reply(raw_body=b""))
    err = complete(client, "boom", stream=True)
    assert err.status_code == 500
    assert err.json()["error"]["type"] == "server_error"
    assert complete(client, "junk").content == b"{not json"
    assert complete(client, "empty").content == b""
    models = client.get("/models").json()["data"]
    assert [m["id"] for m in models] == ["boom", "junk", "empty"]
    nf = client.get("/nope")
    assert nf.status_code == 404
    assert nf.json()["error"]["message"] == "Invalid URL (GET /v1/nope)"
    assert client.post("/completions", content=b"{bad").status_code == 400


def test_api_key_required() -> None:
    with OpenAIEmulator(api_key="sk-test") as emu:
        with httpx.Client(base_url=emu.base_url) as c:
            for key in (None, "wrong"):
                headers = {"Authorization": f"Bearer {key}"} if key else {}
                r = c.post("/completions", json={"model": "m"}, headers=headers)
                assert r.status_code == 401
                assert r.json()["error"]["code"] == "invalid_api_key"
            headers = {"Authorization": "Bearer sk-test"}
            ok = c.post("/completions", json={"model": "m"}, headers=headers)
            assert ok.status_code == 200
        assert len(emu.requests) == 3


def test_cut_after_chunks_truncates_stream(
    emu: OpenAIEmulator, client: httpx.Client
) -> None:
    emu.script("m", Reply(chunks=4, cut_after_chunks=2))
    parser = SSEParser()
    body = {"model": "m", "stream": True}
    with (
        pytest.raises(httpx.RemoteProtocolError),
        client.stream("POST", "/completions", json=body) as r,
    ):
        for piece in r.iter_raw():
            parser.feed(piece)
    assert len(parser.events) == 2
    assert "[DONE]" not in parser.events
    assert emu.disconnects == 0  # our own abort is not a client disconnect


def test_error_event_mid_stream(emu: OpenAIEmulator, client: httpx.Client) -> None:
    emu.script("m", Reply(error_event_after_chunks=1))
    _, parser = post_stream(client, {"model": "m"})
    assert len(parser.events) == 2
    assert json.loads(parser.events[-1])["error"]["type"] == "server_error"


@pytest.mark.parametrize("where", ["between_chunks", "before_headers"])
def test_disconnect_detected(emu: OpenAIEmulator, where: str) -> None:
    if where == "between_chunks":
        emu.script("m", Reply(chunks=50, chunk_delay_s=0.5))
    else:
        emu.script("m", Reply(delay_s=5.0))
    assert not emu.wait_for_disconnect(0.01)
    with httpx.Client(base_url=emu.base_url) as c:
        if where == "between_chunks":
            body = {"model": "m", "stream": True}
            with c.stream("POST", "/completions", json=body) as r:
                next(r.iter_raw())
        else:
            with pytest.raises(httpx.ReadTimeout):
                c.post("/completions", json={"model": "m"}, timeout=0.2)
    t0 = time.monotonic()
    assert emu.wait_for_disconnect(1.0)
    assert time.monotonic() - t0 < 0.3  # noticed mid-sleep, not at the next write
    assert emu.disconnects == 1
