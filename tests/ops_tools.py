"""The real operations tools the ops tests run: nginx, Prometheus, systemd-analyze.

`require(tool)` finds a binary. Missing on a developer's machine: the test is skipped with the
apt-get line that installs it. Missing under CI=true (`.ci/run` installs them): the test fails,
so CI can never go green by skipping.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.proxy_process import REPO, free_port

PACKAGES = {"nginx": "nginx", "prometheus": "prometheus", "promtool": "prometheus",
            "systemd-analyze": "systemd", "openssl": "openssl"}
NGINX_CONF = REPO / "configs" / "nginx" / "switchyard.conf"
PROMETHEUS_CONF = REPO / "configs" / "prometheus" / "prometheus.yml"
ALERTS = REPO / "configs" / "prometheus" / "alerts.yml"
UNIT = REPO / "systemd" / "switchyard.service"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require(tool: str) -> str:
    """The path of `tool`; skip (fail under CI=true) when it is not installed."""
    if tool in os.environ.get("SWITCHYARD_TEST_HIDE_TOOLS", "").split(","):  # to test the missing-tool path
        found = None
    else:
        found = shutil.which(tool) or next(
            (str(p) for d in ("/usr/sbin", "/usr/bin", "/sbin", "/bin") if (p := Path(d, tool)).is_file()), None)
    if found:
        return found
    message = f"{tool} not installed: apt-get install {PACKAGES.get(tool, tool)}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: .ci/run should have installed it)")
    pytest.skip(message)


def wait_http(url: str, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None,
              log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}:\n{log.read_text() if log else ''}")
        try:
            httpx.get(url, timeout=0.5)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer:\n{log.read_text() if log and log.exists() else ''}")


def stop(proc: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------------------------------- nginx
def nginx_conf(tmp: Path, listen_port: int, upstream_port: int) -> Path:
    """The shipped server block with test ports and paths, in a minimal nginx.conf of its own."""
    text = NGINX_CONF.read_text()
    listens = re.findall(r"^\s*listen\s+[^;]+;\s*$", text, flags=re.MULTILINE)
    assert listens, "the shipped nginx config has no listen directive"
    text = text.replace(listens[0], f"    listen 127.0.0.1:{listen_port};", 1)
    for extra in listens[1:]:
        text = text.replace(extra, "", 1)  # the IPv6 twin
    text, n = re.subn(r"server\s+127\.0\.0\.1:8080\b", f"server 127.0.0.1:{upstream_port}", text)
    assert n == 1, "expected one `server 127.0.0.1:8080` in the upstream block"
    text = re.sub(r"access_log\s+\S+", f"access_log {tmp / 'access.log'}", text)
    (tmp / "switchyard.conf").write_text(text)
    temp = "\n".join(f"    {kind}_temp_path {tmp / kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    # As root nginx's workers would run as `nobody`, who cannot enter pytest's 0700 tmp dirs.
    user = "user root root;\n" if os.geteuid() == 0 else ""
    main = tmp / "nginx.conf"
    main.write_text(f"{user}worker_processes 1;\nevents {{ worker_connections 256; }}\n"
                    f"http {{\n{temp}\n    include {tmp / 'switchyard.conf'};\n}}\n")
    return main


def start_nginx(tmp: Path, upstream_port: int) -> tuple[subprocess.Popen[bytes], int]:
    binary = require("nginx")
    port = free_port()
    conf = nginx_conf(tmp, port, upstream_port)
    error_log = tmp / "error.log"
    check = subprocess.run([binary, "-t", "-p", str(tmp), "-e", str(error_log), "-c", str(conf),
                            "-g", f"pid {tmp / 'nginx.pid'};"], check=False, capture_output=True, text=True)
    assert check.returncode == 0, f"nginx -t failed:\n{check.stderr}"
    proc = subprocess.Popen([binary, "-p", str(tmp), "-e", str(error_log), "-c", str(conf),
                             "-g", f"daemon off; pid {tmp / 'nginx.pid'};"],
                            stdout=subprocess.DEVNULL, stderr=error_log.open("ab"))
    wait_http(f"http://127.0.0.1:{port}/healthz", proc=proc, log=error_log)
    return proc, port


# -------------------------------------------------------------------------------------- prometheus
def prometheus_conf(tmp: Path, target_port: int) -> Path:
    """The shipped scrape config aimed at the test proxy, scraping every second; the alert
    rules sit next to it as in the repository, so the relative `rule_files` entry still works."""
    doc = yaml.safe_load(PROMETHEUS_CONF.read_text())
    doc["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    jobs = [job for job in doc["scrape_configs"] if job["job_name"] == "switchyard"]
    assert jobs, "the shipped prometheus.yml has no `switchyard` job"
    jobs[0].update(scrape_interval="1s", scrape_timeout="1s")
    for group in jobs[0]["static_configs"]:
        group["targets"] = [f"127.0.0.1:{target_port}"]
    shutil.copy(ALERTS, tmp / "alerts.yml")
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def start_prometheus(tmp: Path, target_port: int) -> tuple[subprocess.Popen[bytes], str]:
    binary = require("prometheus")
    conf = prometheus_conf(tmp, target_port)
    port = free_port()
    log = tmp / "prometheus.log"
    proc = subprocess.Popen([binary, f"--config.file={conf}", f"--storage.tsdb.path={tmp / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/-/ready", timeout=30, proc=proc, log=log)
    return proc, base


# ---------------------------------------------------------------------------------------- clients
def read_sse(response: httpx.Response) -> list[tuple[float, str]]:
    """(arrival time, data) of every SSE event of a streaming httpx response, as it arrives."""
    events = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            events.append((time.monotonic(), line[len("data: "):]))
    return events
