"""A cache backend outage is served as misses but never silent (issue 9 #4): the request log
says `"cache": "error"`, one warning per outage says what failed, and the metric counts it."""

from __future__ import annotations

import json
import time

import httpx

from tests.conftest import KEY_A, start_proxy
from tests.proxy_process import free_port

URL = "/v2/router/completions"


def request_events(log: str) -> list[dict]:
    events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    return [e for e in events if e.get("event") == "request"]


def test_a_redis_outage_is_logged_and_counted(emulator, upstream, tmp_path):
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    proxy = start_proxy(emulator, tmp_path, f'cache: {{backend: redis, url: "{dead}", timeout_seconds: 0.2}}')
    try:
        with httpx.Client(base_url=proxy.url, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=10) as c:
            for i in range(3):
                r = c.post(URL, json={"model": "emu/m", "prompt": f"p{i}", "cache": {"type": "exact_match"}})
                assert r.status_code == 200, r.text  # an outage never fails a request
                assert r.headers["x-switchyard-cache"] == "error"
            metrics = c.get("/metrics").text
        time.sleep(0.3)  # request log lines are written in 100 ms batches
        log = proxy.log()
    finally:
        proxy.stop()
    assert [e["cache"] for e in request_events(log)][-3:] == ["error", "error", "error"]
    warnings = [line for line in log.splitlines() if "cache backend unavailable" in line]
    assert len(warnings) == 1, "one warning per outage, not one per request"
    assert 'switchyard_cache_requests_total{result="error"} 3.0' in metrics
