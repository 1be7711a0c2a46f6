from tests.conftest import UPSTREAM_KEY


def test_non_stream_roundtrip(client, upstream):
    r = client.post("/v2/router/completions", json={"model": "emu/m1", "prompt": "hi", "max_tokens": 5, "n": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "text_completion" and len(body["choices"]) == 2
    assert r.headers["x-switchyard-model"] == "emu/m1"
    sent = upstream.requests[-1]
    assert sent.body["model"] == "m1" and sent.body["n"] == 2 and sent.body["max_tokens"] == 5
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_stream_roundtrip(client, upstream):
    with client.stream("POST", "/v2/router/completions", json={"model": "emu/m1", "prompt": "hi", "stream": True}) as r:
        assert r.status_code == 200
        text = r.read().decode()
    events = [e[len("data: "):] for e in text.split("\n\n") if e]
    assert events[-1] == "[DONE]"
    import json
    chunks = [json.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == "Hello from the emulator"
    assert chunks[-1]["usage"]["completion_tokens"] == 7
