"""Shared fixtures: an OpenAI wire emulator and the real proxy in front of it, over sockets."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.emulators.openai_server import OpenAIEmulator
from tests.proxy_process import ProxyProcess, free_port

UPSTREAM_KEY = "sk-upstream-secret-0123456789"
KEY_A = "sk-team-a-0123456789"  # every model
KEY_B = "sk-team-b-0123456789"  # only emu/allowed-*
KEY_C = "sk-team-c-0123456789"  # configured by its sha256 only


def shared_redis(db: int, timeout: float = 1.0) -> Any:
    """A client of the machine's shared Redis (127.0.0.1:6379); skipped when it is not running,
    failed under CI=true, where it must be. Tests write only keys of their own there."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, db=db, socket_connect_timeout=0.5, socket_timeout=timeout)
    try:
        client.ping()
    except redis.RedisError:
        if os.environ.get("CI") == "true":
            pytest.fail("Redis not running at 127.0.0.1:6379 (required when CI=true)")
        pytest.skip("Redis not running at 127.0.0.1:6379")
    return client


def proxy_config(emulator: OpenAIEmulator, extra: str = "") -> str:
    """The suite's standard config; `{port}` is filled in by ProxyProcess."""
    return f"""
server:
  host: 127.0.0.1
  port: {{port}}
  max_body_bytes: 65536
  max_request_seconds: 20
  shutdown_grace_seconds: 5
logging: {{level: info, format: json}}
auth:
  keys:
    - {{name: team-a, key: "{KEY_A}"}}
    - {{name: team-b, key: "{KEY_B}", models: ["emu/allowed-*"]}}
    - {{name: team-c, key_sha256: "{hashlib.sha256(KEY_C.encode()).hexdigest()}"}}
providers:
  emu: {{type: openai, base_url: "{emulator.base_url}", api_key: "{UPSTREAM_KEY}"}}
  emu2: {{type: openai, base_url: "{emulator.base_url}", api_key: "{UPSTREAM_KEY}"}}
  dead: {{type: openai, base_url: "http://127.0.0.1:{free_port()}/v1"}}
aliases:
  fast: emu/fast-model
routing: {{backoff_base_ms: 20, backoff_max_ms: 200, retry_after_cap_seconds: 2}}
{extra}
"""


@pytest.fixture(scope="session")
def emulator() -> Iterator[OpenAIEmulator]:
    emu = OpenAIEmulator(api_key=UPSTREAM_KEY)
    emu.start()
    yield emu
    emu.stop()


@pytest.fixture()
def upstream(emulator: OpenAIEmulator) -> OpenAIEmulator:
    """The emulator with no scripts and no records, for one test."""
    emulator.reset()
    return emulator


@pytest.fixture(scope="session")
def proxy(emulator: OpenAIEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    process = ProxyProcess(proxy_config(emulator), tmp_path_factory.mktemp("proxy"))
    process.start()
    yield process
    process.stop()


@pytest.fixture()
def client(proxy: ProxyProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=proxy.url, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30) as c:
        yield c


def start_proxy(emulator: OpenAIEmulator, workdir: Path, extra: str = "", **kwargs: object) -> ProxyProcess:
    return ProxyProcess(proxy_config(emulator, extra), workdir, **kwargs).start()  # type: ignore[arg-type]
