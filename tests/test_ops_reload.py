"""SIGHUP reloads the config file without a restart and without dropping a running request;
a broken file is rejected with one error line and the running config keeps serving."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import KEY_A, proxy_config, start_proxy
from tests.emulators.openai_server import OpenAIEmulator, Reply
from tests.proxy_process import ProxyProcess
from tests.test_ops_drain import stream_in_background

URL = "/v2/router/completions"
KEY_NEW = "sk-team-new-0123456789"


def wait_for_log(proxy: ProxyProcess, text: str, count: int, timeout: float = 10) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        lines = [line for line in proxy.log().splitlines() if text in line]
        if len(lines) >= count:
            return lines
        assert time.monotonic() < deadline, f"{count}x {text!r} not in the log:\n{proxy.log()}"
        time.sleep(0.05)


def write_config(proxy: ProxyProcess, text: str) -> None:
    tmp = proxy.config_path.with_suffix(".new")
    tmp.write_text(text.replace("{port}", str(proxy.port)))
    tmp.replace(proxy.config_path)  # atomic, as an editor or a config manager would


def post(proxy: ProxyProcess, key: str, model: str) -> httpx.Response:
    # A fresh connection each time, so with several workers each of them answers some.
    return httpx.post(proxy.url + URL, headers={"Authorization": f"Bearer {key}"}, timeout=10,
                      json={"model": model, "prompt": "hi"})


@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_adds_keys_providers_and_aliases(upstream: OpenAIEmulator, tmp_path: Path, workers: int) -> None:
    upstream.script("long", Reply(text="a b c d e", chunks=5, chunk_delay_s=0.4))
    proxy = start_proxy(upstream, tmp_path / "proxy", args=["--workers", str(workers)])
    try:
        assert post(proxy, KEY_NEW, "emu/x").status_code == 401
        thread, out, started = stream_in_background(proxy, "emu/long")
        assert started.wait(10)

        new = proxy_config(upstream).replace(
            "  keys:\n", f'  keys:\n    - {{name: team-new, key: "{KEY_NEW}"}}\n').replace(
            "aliases:\n", "aliases:\n  newalias: emu3/aliased\n").replace(
            "providers:\n", f'providers:\n  emu3: {{type: openai, base_url: "{upstream.base_url}", '
                            f'api_key: "sk-upstream-secret-0123456789"}}\n')
        write_config(proxy, new)
        proxy.signal(signal.SIGHUP)
        wait_for_log(proxy, '"config reloaded"', workers)
        assert thread.is_alive(), "the stream should outlive the reload"
        for _ in range(6):
            r = post(proxy, KEY_NEW, "newalias")
            assert r.status_code == 200, r.text
            assert r.headers["x-switchyard-model"] == "emu3/aliased"
            assert post(proxy, KEY_A, "emu/x").status_code == 200
        thread.join(15)
        assert out.get("status") == 200 and out["events"][-1] == "[DONE]", out
        text = "".join(json.loads(e)["choices"][0]["text"] for e in out["events"][:-1])
        assert text == "a b c d e"
        # A provider added by the reload gets its own metrics label, not "other".
        assert 'provider="emu3"' in httpx.get(f"{proxy.url}/metrics").text

        broken = new.replace("emu3: {type: openai", "emu3: {type: no-such-type")
        write_config(proxy, broken)
        proxy.signal(signal.SIGHUP)
        errors = wait_for_log(proxy, "config reload failed", 1)
        time.sleep(0.3)
        errors = [line for line in proxy.log().splitlines() if "config reload failed" in line]
        assert len(errors) == 1, errors
        assert "providers.emu3.type" in errors[0] and "no-such-type" in errors[0]
        assert json.loads(errors[0])["level"] == "error"
        for _ in range(4):  # the previous config still serves, new key included
            assert post(proxy, KEY_NEW, "newalias").status_code == 200
        assert proxy.log().count('"config reloaded"') == workers
    finally:
        assert proxy.stop() == 0


def test_the_memory_cache_survives_a_reload_that_keeps_its_settings(upstream: OpenAIEmulator,
                                                                   tmp_path: Path) -> None:
    proxy = start_proxy(upstream, tmp_path / "proxy")
    body = {"model": "emu/cached", "prompt": "kept across reloads", "cache": {"type": "exact_match", "ttl": 600}}
    headers = {"Authorization": f"Bearer {KEY_A}"}
    try:
        assert httpx.post(proxy.url + URL, headers=headers, json=body).headers["x-switchyard-cache"] == "miss"
        write_config(proxy, proxy_config(upstream).replace("aliases:\n", "aliases:\n  another: emu/x\n"))
        proxy.signal(signal.SIGHUP)
        wait_for_log(proxy, '"config reloaded"', 1)
        r = httpx.post(proxy.url + URL, headers=headers, json=body)
        assert r.status_code == 200 and r.headers["x-switchyard-cache"] == "hit"
        assert [q.model for q in upstream.requests] == ["cached"]
    finally:
        proxy.stop()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_reload_that_changes_the_port_warns_that_it_was_not_applied(upstream: OpenAIEmulator, tmp_path: Path,
                                                                       workers: int) -> None:
    """Issue 9, item 8: `config reloaded` alone would say the new port is in force."""
    proxy = start_proxy(upstream, tmp_path / "proxy", args=["--workers", str(workers)])
    try:
        text = proxy_config(upstream).replace("port: {port}", "port: 1").replace(
            "  shutdown_grace_seconds: 5", "  shutdown_grace_seconds: 5\n  header_timeout_seconds: 3")
        write_config(proxy, text)
        proxy.signal(signal.SIGHUP)
        warnings = wait_for_log(proxy, "config changes that need a restart were not applied", workers)
        for line in warnings:
            assert json.loads(line)["keys"] == ["server.port", "server.header_timeout_seconds"], line
        assert post(proxy, KEY_A, "emu/m").status_code == 200  # still on the old port
    finally:
        proxy.stop()
