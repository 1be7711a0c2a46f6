"""The log never holds a client key, a provider key or an `inputs` value marked `is_pii`."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx

from tests.conftest import KEY_A, UPSTREAM_KEY, proxy_config
from tests.emulators.openai_server import OpenAIEmulator, Reply
from tests.proxy_process import ProxyProcess

URL = "/v2/router/completions"
PII = "PII-SSN-078-05-1120"
PII_EMAIL = "jane.doe.pii@example.com"
WRONG_KEY = "sk-wrong-but-secret-7777777"


def test_no_secret_reaches_the_log(upstream: OpenAIEmulator, tmp_path: Path) -> None:
    upstream.script("bad", Reply(status=500))
    config = proxy_config(upstream).replace("level: info", "level: debug")  # the chattiest level
    proxy = ProxyProcess(config, tmp_path / "proxy").start()
    orq = {"name": "secrets-test", "identity": {"id": "user-1"},
           "inputs": [{"key": "ssn", "value": PII, "is_pii": True},
                      {"key": "email", "value": PII_EMAIL, "is_pii": True},
                      {"key": "city", "value": "Lisbon"}]}
    base = {"prompt": "Customer {{ssn}} / {{email}} from {{city}}", "orq": orq}
    try:
        with httpx.Client(base_url=proxy.url, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=10) as c:
            assert c.post(URL, json={**base, "model": "emu/ok"}).status_code == 200
            with c.stream("POST", URL, json={**base, "model": "emu/ok", "stream": True}) as r:
                assert r.status_code == 200 and r.read().endswith(b"data: [DONE]\n\n")
            assert c.post(URL, json={**base, "model": "emu/bad"}).status_code == 500
            assert c.post(URL, json={**base, "model": "emu/ok", "temperature": 9}).status_code == 400
            r = c.post(URL, json={**base, "model": "emu/ok"}, headers={"Authorization": f"Bearer {WRONG_KEY}"})
            assert r.status_code == 401
        proxy.signal(signal.SIGHUP)  # reload and shutdown log too
    finally:
        proxy.stop()
    log = proxy.log()
    events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert sum(e["event"] == "request" for e in events) == 5  # the log did record the requests
    assert any(e.get("identity_id") == "user-1" for e in events)
    for secret in (KEY_A, UPSTREAM_KEY, WRONG_KEY, PII, PII_EMAIL):
        assert secret not in log, f"{secret!r} leaked into the log"
