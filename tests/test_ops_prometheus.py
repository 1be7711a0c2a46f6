"""Real Prometheus scraping the real proxy with the shipped scrape config: every PromQL
expression of the Grafana dashboard and of the alert rules evaluates, and the panels whose
metrics the traffic produced return data."""

from __future__ import annotations

import asyncio
import re
import subprocess
import threading
import time
from pathlib import Path

import httpx

from tests import promql_check
from tests.conftest import KEY_A, start_proxy
from tests.emulators.openai_server import OpenAIEmulator, Reply
from tests.ops_tools import ALERTS, require, start_prometheus, stop
from tests.proxy_process import ProxyProcess

URL = "/v2/router/completions"


def test_promtool_checks_the_shipped_rules_and_config(tmp_path: Path) -> None:
    promtool = require("promtool")
    rules = subprocess.run([promtool, "check", "rules", str(ALERTS)], check=False, capture_output=True, text=True)
    assert rules.returncode == 0, rules.stdout + rules.stderr
    config = subprocess.run([promtool, "check", "config", str(ALERTS.parent / "prometheus.yml")],
                            check=False, capture_output=True, text=True)
    assert config.returncode == 0, config.stdout + config.stderr


def _traffic(base: str, n: int) -> None:
    """One round of everything the panels show: plain, stream, retry, fallback, error, 401."""
    headers = {"Authorization": f"Bearer {KEY_A}"}
    with httpx.Client(base_url=base, headers=headers, timeout=10) as c:
        c.post(URL, json={"model": "emu/ok", "prompt": f"p{n}"}).raise_for_status()
        with c.stream("POST", URL, json={"model": "emu/ok", "prompt": f"s{n}", "stream": True}) as r:
            r.read()
        assert c.post(URL, json={"model": "emu/flaky", "prompt": f"r{n}",
                                 "retry": {"count": 1, "on_codes": [429]}}).status_code == 200
        assert c.post(URL, json={"model": "emu/down", "prompt": f"f{n}",
                                 "fallbacks": [{"model": "emu2/ok"}]}).status_code == 200
        assert c.post(URL, json={"model": "emu/down", "prompt": f"e{n}"}).status_code == 500
        for _ in range(2):  # same connection, so the same worker: a miss, then a hit
            c.post(URL, json={"model": "emu/ok", "prompt": "cached", "cache": {"type": "exact_match", "ttl": 60}})
        assert c.post(URL, json={"model": "emu/ok", "prompt": "x"},
                      headers={"Authorization": "Bearer wrong-key-000"}).status_code == 401


def _names(expr: str) -> set[str]:
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in re.findall(r"\bswitchyard_\w+", expr)}


def test_dashboard_and_alert_queries_evaluate(upstream: OpenAIEmulator, tmp_path: Path) -> None:
    upstream.script("down", Reply(status=500))
    # A 429 then a 200 per round: enough pairs for every round.
    upstream.script("flaky", *[Reply(status=429) if i % 2 == 0 else Reply() for i in range(40)])
    require("prometheus")  # before anything starts: a skip must leave no process behind
    stop_traffic = threading.Event()
    proxy: ProxyProcess | None = None
    proc: subprocess.Popen[bytes] | None = None

    def keep_sending(url: str) -> None:
        n = 0
        while not stop_traffic.is_set() and n < 20:
            _traffic(url, n)
            n += 1
            time.sleep(0.4)

    try:
        proxy = start_proxy(upstream, tmp_path / "proxy", args=["--workers", "2"])
        prom_dir = tmp_path / "prometheus"
        prom_dir.mkdir()
        proc, prom = start_prometheus(prom_dir, proxy.port)
        sender = threading.Thread(target=keep_sending, args=(proxy.url,), daemon=True)
        sender.start()
        asyncio.run(promql_check.wait_for_data(prom, timeout=30, samples=4))
        exposed = set(re.findall(r"^(switchyard_\w+?)(?:_bucket|_sum|_count)?[{ ]",
                                 httpx.get(f"{proxy.url}/metrics").text, flags=re.MULTILINE))
        stop_traffic.set()
        sender.join(30)
        dashboard = promql_check.dashboard_expressions()
        concrete = promql_check.dashboard_expressions(variables={"provider": "emu", "model": "ok"})
        rules = promql_check.rule_expressions()
        results = asyncio.run(promql_check.check_expressions(prom, [*dashboard, *concrete, *rules]))
    finally:  # every path: whatever was started is stopped
        stop_traffic.set()
        if proc is not None:
            stop(proc)
        if proxy is not None:
            proxy.stop()
    failed = [(e, body.get("error")) for e, body in results if body.get("status") != "success"]
    assert not failed, failed
    # Panels over metrics the traffic produced must show something (the cache panels only once the
    # cache stage counts lookups).
    by_expr = dict(results)
    empty = [e for e in dashboard if _names(e) <= exposed and promql_check.result_count(by_expr[e]) == 0]
    assert not empty, empty
    traffic = ("switchyard_requests_total", "switchyard_request_duration_seconds", "switchyard_tokens_total",
               "switchyard_time_to_first_token_seconds", "switchyard_retries_total", "switchyard_fallbacks_total")
    assert set(traffic) <= exposed, sorted(exposed)


def test_a_skip_for_a_missing_prometheus_leaves_no_process_behind(tmp_path: Path) -> None:
    """Issue 9, item 9: the proxy used to start before the skip, outside the try/finally."""
    import os
    import sys

    from tests.proxy_process import REPO

    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["SWITCHYARD_TEST_HIDE_TOOLS"] = "prometheus"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp",
                           str(tmp_path / "run"), f"{Path(__file__).name}::test_dashboard_and_alert_queries_evaluate"],
                          cwd=REPO / "tests", env=env, capture_output=True, text=True, timeout=120, check=False)
    assert "1 skipped" in done.stdout, done.stdout + done.stderr
    left = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if str(tmp_path / "run").encode() in cmdline:
            left.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    assert not left, left
