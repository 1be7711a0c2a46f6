"""The shipped unit passes `systemd-analyze verify`, and the proxy speaks sd_notify."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import start_proxy
from tests.emulators.openai_server import OpenAIEmulator
from tests.ops_tools import UNIT, require
from tests.proxy_process import REPO

VENV_SWITCHYARD = REPO / ".venv" / "bin" / "switchyard"


def test_unit_verifies(tmp_path: Path) -> None:
    analyze = require("systemd-analyze")
    text = UNIT.read_text()
    for key in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "Restart=on-failure", "LimitNOFILE=65536",
                "NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes", "User=switchyard",
                "EnvironmentFile=-/etc/switchyard/switchyard.env", "TimeoutStopSec=45"):
        assert key in text, key
    # verify insists that ExecStart's binary exists: point a copy at this checkout's venv.
    binary = VENV_SWITCHYARD if VENV_SWITCHYARD.exists() else Path("/bin/true")
    unit = tmp_path / "switchyard.service"
    unit.write_text(text.replace("/opt/switchyard/.venv/bin/switchyard", str(binary)))
    result = subprocess.run([analyze, "verify", str(unit)], check=False, capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # Unknown keys and bad values are only warnings (exit 0): none may name our unit.
    assert "switchyard.service" not in output, output


@pytest.fixture()
def notify_socket(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if getattr(request, "param", "path") == "abstract":
        name = f"switchyard-test-{os.getpid()}-{id(sock)}"
        sock.bind("\0" + name)
        address = "@" + name
    else:
        address = str(tmp_path / "notify.sock")
        sock.bind(address)
    sock.settimeout(15)
    with sock:
        yield sock, address


def receive(sock: socket.socket, wanted: str) -> list[str]:
    """Datagrams until one holds `wanted`; returns them all."""
    seen = []
    while True:
        data = sock.recv(4096).decode()
        seen.append(data)
        if wanted in data.split("\n"):
            return seen


def test_ready_reloading_and_stopping_datagrams(upstream: OpenAIEmulator, tmp_path: Path,
                                               notify_socket: tuple[socket.socket, str]) -> None:
    sock, address = notify_socket
    proxy = start_proxy(upstream, tmp_path / "proxy", env={"NOTIFY_SOCKET": address})
    try:
        assert receive(sock, "READY=1")[0].startswith("READY=1")
        proxy.signal(signal.SIGHUP)
        reloading = receive(sock, "RELOADING=1")[-1].split("\n")
        assert any(line.startswith("MONOTONIC_USEC=") and line[15:].isdigit() for line in reloading)
        receive(sock, "READY=1")  # reload finished
        proxy.signal(signal.SIGTERM)
        receive(sock, "STOPPING=1")
        assert proxy.process is not None and proxy.process.wait(15) == 0, proxy.log()
    finally:
        proxy.stop()


@pytest.mark.parametrize("notify_socket", ["abstract"], indirect=True)
def test_ready_from_the_parent_once_every_worker_listens(upstream: OpenAIEmulator, tmp_path: Path,
                                                        notify_socket: tuple[socket.socket, str]) -> None:
    sock, address = notify_socket
    proxy = start_proxy(upstream, tmp_path / "proxy", env={"NOTIFY_SOCKET": address}, args=["--workers", "2"])
    try:
        receive(sock, "READY=1")
        log = proxy.log()
        assert log.count("listening on") == 2 and "workers ready" in log
        # Exactly one READY: the workers never speak to systemd themselves.
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(4096)
        assert httpx.get(f"{proxy.url}/readyz").status_code == 200
        sock.settimeout(15)
        proxy.signal(signal.SIGTERM)
        receive(sock, "STOPPING=1")
        assert proxy.process is not None and proxy.process.wait(15) == 0, proxy.log()
    finally:
        proxy.stop()
