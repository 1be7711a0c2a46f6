"""/metrics moves by exactly what a scripted run implies, with one process and with two workers
(prometheus-client multiprocess mode sums them), and the gauges come back to zero."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import KEY_A, start_proxy
from tests.emulators.openai_server import OpenAIEmulator, Reply
from tests.proxy_process import ProxyProcess

URL = "/v2/router/completions"
AUTH = {"Authorization": f"Bearer {KEY_A}"}


def scrape(proxy: ProxyProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(f"{proxy.url}/metrics", timeout=5).text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def moved(before: dict, after: dict, name: str, by: tuple[str, ...]) -> dict[tuple[str, ...], float]:
    """How much `name` grew, summed over every label but `by`; only the series that moved."""
    out: Counter[tuple[str, ...]] = Counter()
    for key, value in after.items():
        if key[0] == name:
            labels = dict(key[1])
            out[tuple(labels.get(b, "") for b in by)] += value - before.get(key, 0.0)
    return {k: v for k, v in out.items() if v}


def gauge(samples: dict, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def fresh_post(proxy: ProxyProcess, body: dict, key: str = KEY_A) -> httpx.Response:
    # A new connection per request, so SO_REUSEPORT spreads them over the workers.
    return httpx.post(proxy.url + URL, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=10)


def fresh_stream(proxy: ProxyProcess, body: dict) -> str:
    with httpx.stream("POST", proxy.url + URL, json={**body, "stream": True}, headers=AUTH, timeout=10) as r:
        assert r.status_code == 200
        return r.read().decode()


@pytest.mark.parametrize("workers", [1, 2])
def test_counters_and_histograms_move_exactly(upstream: OpenAIEmulator, tmp_path: Path, workers: int) -> None:
    upstream.script("bad", Reply(status=500))
    k = workers * 2  # more requests with more workers: both must get some
    # As the systemd unit does: a fixed directory, with a stale file of an earlier run in it.
    mp_dir = tmp_path / "metrics"
    mp_dir.mkdir()
    (mp_dir / "counter_999999.db").write_bytes(b"stale")
    proxy = start_proxy(upstream, tmp_path / "proxy", args=["--workers", str(workers)],
                        env={"PROMETHEUS_MULTIPROC_DIR": str(mp_dir)})
    try:
        before = scrape(proxy)
        for i in range(5 * k):
            assert fresh_post(proxy, {"model": "emu/ok", "prompt": f"ok {i}"}).status_code == 200
        for i in range(2 * k):
            assert fresh_stream(proxy, {"model": "emu/st", "prompt": f"st {i}"}).endswith("data: [DONE]\n\n")
        for i in range(k):
            assert fresh_post(proxy, {"model": "emu/bad", "prompt": f"bad {i}"}).status_code == 500
            assert fresh_post(proxy, {"model": "emu/ok", "prompt": "x"}, key="sk-not-a-key-000").status_code == 401
        afters = [scrape(proxy) for _ in range(3)]  # any worker answers with the same sums
    finally:
        proxy.stop()
    after = afters[0]
    assert all(moved(after, a, "switchyard_requests_total", ("status",)) == {} for a in afters[1:])

    pm = ("provider", "model")
    assert moved(before, after, "switchyard_requests_total", (*pm, "status")) == {
        ("emu", "ok", "200"): 5 * k, ("emu", "st", "200"): 2 * k, ("emu", "bad", "500"): k,
        ("none", "none", "401"): k}
    for name in ("switchyard_request_duration_seconds_count", "switchyard_request_duration_seconds_bucket"):
        by = (*pm, "le") if name.endswith("bucket") else pm
        grew = moved(before, after, name, by)
        inf = {key[:2]: v for key, v in grew.items() if not name.endswith("bucket") or key[2] == "+Inf"}
        assert inf == {("emu", "ok"): 5 * k, ("emu", "st"): 2 * k, ("emu", "bad"): k, ("none", "none"): k}, name
    assert moved(before, after, "switchyard_overhead_seconds_count", ("route",)) == {("completions",): 9 * k}
    upstream_moves = {("emu", "ok", "200"): 5 * k, ("emu", "st", "200"): 2 * k, ("emu", "bad", "500"): k}
    assert moved(before, after, "switchyard_upstream_requests_total", (*pm, "status")) == upstream_moves
    assert moved(before, after, "switchyard_upstream_duration_seconds_count", (*pm, "status")) == upstream_moves
    # The emulator reports 5 prompt and 7 completion tokens per answer.
    assert moved(before, after, "switchyard_tokens_total", (*pm, "type")) == {
        ("emu", "ok", "prompt"): 25 * k, ("emu", "ok", "completion"): 35 * k,
        ("emu", "st", "prompt"): 10 * k, ("emu", "st", "completion"): 14 * k}
    assert moved(before, after, "switchyard_time_to_first_token_seconds_count", pm) == {("emu", "st"): 2 * k}
    assert moved(before, after, "switchyard_retries_total", pm) == {}
    assert moved(before, after, "switchyard_fallbacks_total", pm) == {}
    assert gauge(after, "switchyard_in_flight_requests") == 0
    assert gauge(after, "switchyard_active_streams") == 0
    # Each process writes its own counter file: every worker served some of the requests.
    per_process = {path.name: sum(v for key, v, *_ in MmapedDict.read_all_values_from_file(str(path))
                                  if '"switchyard_requests_total"' in key)
                   for path in mp_dir.glob("counter_*.db")}
    assert len(per_process) == workers and all(per_process.values()), per_process
    assert sum(per_process.values()) == 9 * k


@pytest.mark.parametrize("workers", [1, 2])
def test_gauges_return_to_zero_after_a_client_leaves_mid_stream(upstream: OpenAIEmulator, tmp_path: Path,
                                                                workers: int) -> None:
    upstream.script("long", Reply(text="z" * 40, chunks=40, chunk_delay_s=0.2))
    proxy = start_proxy(upstream, tmp_path / "proxy", args=["--workers", str(workers)])
    try:
        before = scrape(proxy)
        with httpx.stream("POST", proxy.url + URL, headers=AUTH, timeout=10,
                          json={"model": "emu/long", "prompt": "hi", "stream": True}) as r:
            lines = r.iter_lines()
            assert next(line for line in lines if line.startswith("data: "))
            during = scrape(proxy)
            assert gauge(during, "switchyard_in_flight_requests") == 1
            assert gauge(during, "switchyard_active_streams") == 1
        # Leaving the block closed the connection mid-stream.
        assert upstream.wait_for_disconnect(5), "the proxy should cancel the upstream request"
        deadline = time.monotonic() + 5
        while True:
            after = scrape(proxy)
            settled = (gauge(after, "switchyard_in_flight_requests"), gauge(after, "switchyard_active_streams"))
            if settled == (0, 0) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert settled == (0, 0)
        assert moved(before, after, "switchyard_requests_total", ("model", "status")) == {("long", "499"): 1}
    finally:
        proxy.stop()
