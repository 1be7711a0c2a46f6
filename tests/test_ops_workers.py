"""`--workers N`: the parent restarts a worker that dies, and a dead worker's in-flight requests
leave the gauges (prometheus-client's mark_process_dead)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx

from tests.conftest import KEY_A, start_proxy
from tests.emulators.openai_server import OpenAIEmulator, Reply
from tests.proxy_process import ProxyProcess
from tests.test_ops_drain import stream_in_background
from tests.test_ops_metrics import gauge, scrape

URL = "/v2/router/completions"


def listening_pids(proxy: ProxyProcess) -> list[int]:
    return [json.loads(line)["pid"] for line in proxy.log().splitlines() if '"listening on' in line]


def wait_until(check, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_dead_workers_are_restarted_and_leave_no_gauges(upstream: OpenAIEmulator, tmp_path: Path) -> None:
    upstream.script("long", Reply(text="y" * 50, chunks=50, chunk_delay_s=0.2))
    proxy = start_proxy(upstream, tmp_path / "proxy", args=["--workers", "2"])
    try:
        wait_until(lambda: len(listening_pids(proxy)) == 2)
        first = listening_pids(proxy)
        thread, out, started = stream_in_background(proxy, "emu/long")
        assert started.wait(10)
        assert gauge(scrape(proxy), "switchyard_active_streams") == 1
        for pid in first:
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: len(listening_pids(proxy)) == 4)
        thread.join(10)
        assert "[DONE]" not in out["events"]  # its worker died under it
        log = proxy.log()
        assert log.count("worker exited unexpectedly, restarting it") == 2
        metrics = scrape(proxy)
        assert gauge(metrics, "switchyard_active_streams") == 0
        assert gauge(metrics, "switchyard_in_flight_requests") == 0
        r = httpx.post(proxy.url + URL, headers={"Authorization": f"Bearer {KEY_A}"},
                       json={"model": "emu/ok", "prompt": "still serving"}, timeout=10)
        assert r.status_code == 200
    finally:
        assert proxy.stop() == 0
