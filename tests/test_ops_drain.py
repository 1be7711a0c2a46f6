"""SIGTERM drains: readiness off, no new connections, running streams finish within the grace,
the rest end with an in-band error event; the process exits 0."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import KEY_A, proxy_config, start_proxy
from tests.emulators.openai_server import OpenAIEmulator, Reply
from tests.proxy_process import ProxyProcess

URL = "/v2/router/completions"
AUTH = {"Authorization": f"Bearer {KEY_A}"}


def stream_in_background(proxy: ProxyProcess, model: str) -> tuple[threading.Thread, dict, threading.Event]:
    """A stream read on a thread; `started` is set at its first event, `out` gets every event."""
    out: dict = {}
    started = threading.Event()

    def run() -> None:
        events: list[str] = []
        out["events"] = events
        try:
            with httpx.stream("POST", proxy.url + URL, headers=AUTH, timeout=30,
                              json={"model": model, "prompt": "long story", "stream": True}) as r:
                out["status"] = r.status_code
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        events.append(line[6:])
                        started.set()
        except httpx.HTTPError as err:
            out["error"] = err
        finally:
            started.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out, started


@pytest.mark.parametrize("workers", [1, 2])
def test_running_stream_finishes_and_new_connections_are_refused(upstream: OpenAIEmulator, tmp_path: Path,
                                                                 workers: int) -> None:
    upstream.script("long", Reply(text="a b c d e f", chunks=6, chunk_delay_s=0.4))  # ~2 s
    proxy = start_proxy(upstream, tmp_path / "proxy", args=["--workers", str(workers)])
    try:
        thread, out, started = stream_in_background(proxy, "emu/long")
        assert started.wait(10) and "events" in out
        proxy.signal(signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(httpx.ConnectError):  # the listener is closed
            httpx.get(f"{proxy.url}/readyz", timeout=2)
        assert thread.is_alive(), "the stream should still be running"
        thread.join(15)
        assert proxy.process is not None and proxy.process.wait(15) == 0
    finally:
        proxy.stop()
    assert out.get("status") == 200 and "error" not in out, out
    assert out["events"][-1] == "[DONE]"
    assert "".join(json.loads(e)["choices"][0]["text"] for e in out["events"][:-1]) == "a b c d e f"
    assert "draining" in proxy.log()


def test_streams_longer_than_the_grace_end_with_an_error_event(upstream: OpenAIEmulator, tmp_path: Path) -> None:
    upstream.script("endless", Reply(text="x" * 30, chunks=30, chunk_delay_s=0.3))  # ~9 s
    upstream.script("slow-answer", Reply(delay_s=8))
    config = proxy_config(upstream).replace("shutdown_grace_seconds: 5", "shutdown_grace_seconds: 1")
    proxy = ProxyProcess(config, tmp_path / "proxy").start()
    plain: dict = {}

    def non_stream() -> None:
        plain["response"] = httpx.post(proxy.url + URL, headers=AUTH, timeout=30,
                                       json={"model": "emu/slow-answer", "prompt": "hi"})

    try:
        thread, out, started = stream_in_background(proxy, "emu/endless")
        other = threading.Thread(target=non_stream, daemon=True)
        other.start()
        assert started.wait(10) and "events" in out
        deadline = time.monotonic() + 10
        while not any(r.model == "slow-answer" for r in upstream.requests):  # both are in flight
            assert time.monotonic() < deadline
            time.sleep(0.02)
        sent = time.monotonic()
        proxy.signal(signal.SIGTERM)
        assert proxy.process is not None and proxy.process.wait(10) == 0
        assert time.monotonic() - sent < 1 + 2 + 1.5  # grace, then at most the close timeout
        thread.join(5)
        other.join(5)
    finally:
        proxy.stop()
    assert out.get("status") == 200 and "error" not in out, out
    last = json.loads(out["events"][-1])
    assert "[DONE]" not in out["events"]
    assert last["error"]["code"] == "request_timeout" and set(last["error"]) == {"message", "type", "param", "code"}
    response = plain["response"]
    assert response.status_code == 503 and response.json()["error"]["code"] == "request_timeout"
    log = [json.loads(line) for line in proxy.log().splitlines() if line.startswith("{")]
    assert any(e["event"] == "grace over, cancelling requests" for e in log)
    drained = [e for e in log if e["event"] == "request" and e.get("stream_error")]
    assert drained and drained[0]["status"] == 503
