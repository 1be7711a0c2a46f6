"""Real nginx, with the shipped configs/nginx/switchyard.conf, in front of the real proxy."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import KEY_A, start_proxy
from tests.emulators.openai_server import OpenAIEmulator, Reply
from tests.ops_tools import NGINX_CONF, read_sse, require, start_nginx, stop, wait_http
from tests.proxy_process import free_port

URL = "/v2/router/completions"


@pytest.fixture()
def nginx(upstream: OpenAIEmulator, tmp_path: Path) -> Iterator[httpx.Client]:
    proxy = start_proxy(upstream, tmp_path / "proxy")
    (tmp_path / "nginx").mkdir()
    try:
        proc, port = start_nginx(tmp_path / "nginx", proxy.port)
    except BaseException:
        proxy.stop()
        raise
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                          headers={"Authorization": f"Bearer {KEY_A}"}) as client:
            yield client
    finally:
        stop(proc)
        proxy.stop()


def test_sse_chunks_are_not_buffered(nginx: httpx.Client, upstream: OpenAIEmulator) -> None:
    upstream.script("slow", Reply(text="one two three four five six", chunks=6, chunk_delay_s=0.3))
    with nginx.stream("POST", URL, json={"model": "emu/slow", "prompt": "hi", "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = read_sse(r)
    assert events[-1][1] == "[DONE]"
    content = [t for t, data in events[:-1] if json.loads(data)["choices"]]
    assert len(content) == 6
    # The proxy holds the last content chunk until the upstream's usage arrives (the final chunk
    # carries the usage), so only the gaps before it are the upstream's 0.3 s.
    gaps = [b - a for a, b in itertools.pairwise(content[:-1])]
    # Buffered by nginx, they would arrive in one burst at the end (gaps ~0).
    assert len(gaps) == 4 and all(0.2 < gap < 0.6 for gap in gaps), gaps
    assert events[-1][0] - content[0] > 1.2


def test_non_stream_request_passes(nginx: httpx.Client, upstream: OpenAIEmulator) -> None:
    r = nginx.post(URL, json={"model": "emu/plain", "prompt": "hi", "max_tokens": 5})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["text"] == "Hello from the emulator"
    assert r.headers["x-switchyard-model"] == "emu/plain"


def test_request_id_round_trips(nginx: httpx.Client, upstream: OpenAIEmulator) -> None:
    r = nginx.post(URL, json={"model": "emu/rid", "prompt": "hi"}, headers={"X-Request-ID": "client-rid-42"})
    assert r.status_code == 200, r.text
    assert r.headers["x-request-id"] == "client-rid-42"
    assert upstream.requests[-1].headers["x-request-id"] == "client-rid-42"
    # None sent: nginx makes one, and the proxy, the upstream and the client all see the same.
    r = nginx.post(URL, json={"model": "emu/rid", "prompt": "hi"})
    made = r.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    assert upstream.requests[-1].headers["x-request-id"] == made


def test_metrics_are_not_exposed(nginx: httpx.Client) -> None:
    assert nginx.get("/metrics").status_code == 404
    assert nginx.get("/healthz").status_code == 200


# -- installed as the README says, next to Debian's stock default site (issue 9, item 7) -------------------
# Debian's /etc/nginx/sites-enabled/default (comments dropped) and the includes of its nginx.conf.
DEBIAN_DEFAULT_SITE = """server {
    listen PORT default_server;
    root ROOT;
    index index.html;
    server_name _;
    location / {
        try_files $uri $uri/ =404;
    }
}
"""


def debian_layout(tmp: Path, port: int, tls_port: int, upstream_port: int, tls: bool) -> Path:
    """etc/nginx as Debian lays it out: conf.d/ (our file, as the README copies it) is included before
    sites-enabled/ (the stock default_server). Only ports, paths and, with `tls`, the certificate differ."""
    etc = tmp / "etc-nginx"
    for sub in ("conf.d", "sites-enabled", "www"):
        (etc / sub).mkdir(parents=True)
    text = NGINX_CONF.read_text()
    text = text.replace("    listen 80;\n", f"    listen {port};\n").replace("    listen [::]:80;\n", "")
    if tls:
        for line in ("listen 443 ssl;", "ssl_certificate ", "ssl_certificate_key "):
            text = text.replace(f"# {line}", line)
        text = text.replace("listen 443 ssl;", f"listen {tls_port} ssl;").replace("    # listen [::]:443 ssl;\n", "")
        text = text.replace("/etc/ssl/certs/switchyard.pem", str(tmp / "cert.pem"))
        text = text.replace("/etc/ssl/private/switchyard.key", str(tmp / "key.pem"))
    text = text.replace("server 127.0.0.1:8080;", f"server 127.0.0.1:{upstream_port};")
    text = re.sub(r"access_log\s+\S+", f"access_log {tmp / 'access.log'}", text)
    (etc / "conf.d" / "switchyard.conf").write_text(text)
    (etc / "sites-enabled" / "default").write_text(
        DEBIAN_DEFAULT_SITE.replace("PORT", str(port)).replace("ROOT", str(etc / "www")))
    temp = "\n".join(f"    {kind}_temp_path {tmp / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                                           "scgi"))
    user = "user root root;\n" if os.geteuid() == 0 else ""
    main = etc / "nginx.conf"
    main.write_text(f"{user}worker_processes 1;\nevents {{ worker_connections 64; }}\nhttp {{\n{temp}\n"
                    f"    include {etc}/conf.d/*.conf;\n    include {etc}/sites-enabled/*;\n}}\n")
    return main


@pytest.mark.parametrize("tls", [False, True], ids=["http", "tls-enabled"])
def test_next_to_debians_default_site(upstream: OpenAIEmulator, tmp_path: Path, tls: bool) -> None:
    binary = require("nginx")
    if tls:
        openssl = require("openssl")
        subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                        "/CN=switchyard.example.com", "-keyout", str(tmp_path / "key.pem"), "-out",
                        str(tmp_path / "cert.pem")], check=True, capture_output=True, timeout=60)
    proxy = start_proxy(upstream, tmp_path / "proxy")
    proc: subprocess.Popen[bytes] | None = None
    try:
        port, tls_port = free_port(), free_port()
        conf = debian_layout(tmp_path, port, tls_port, proxy.port, tls)
        error_log = tmp_path / "error.log"
        args = [binary, "-p", str(tmp_path), "-e", str(error_log), "-c", str(conf)]
        check = subprocess.run([*args, "-t", "-g", f"pid {tmp_path / 'nginx.pid'};"], capture_output=True,
                               text=True, check=False)
        assert check.returncode == 0, check.stderr
        proc = subprocess.Popen([*args, "-g", f"daemon off; pid {tmp_path / 'nginx.pid'};"],
                                stdout=subprocess.DEVNULL, stderr=error_log.open("ab"))
        wait_http(f"http://127.0.0.1:{port}/", proc=proc, log=error_log)
        body = {"model": "emu/plain", "prompt": "hi"}
        auth = {"Authorization": f"Bearer {KEY_A}"}
        ours = {**auth, "Host": "switchyard.example.com"}
        r = httpx.post(f"http://127.0.0.1:{port}{URL}", json=body, headers=ours, timeout=10)
        assert r.status_code == 200 and r.headers["x-switchyard-model"] == "emu/plain", r.text
        # Any other name is the stock default site's, as the README says.
        other = httpx.post(f"http://127.0.0.1:{port}{URL}", json=body, headers={**auth, "Host": "other"}, timeout=10)
        assert other.status_code != 200 and "x-switchyard-model" not in other.headers
        if tls:
            with httpx.Client(verify=False, timeout=10) as client:
                r = client.post(f"https://127.0.0.1:{tls_port}{URL}", json=body, headers=ours)
            assert r.status_code == 200 and r.headers["x-switchyard-model"] == "emu/plain", r.text
    finally:
        if proc is not None:
            stop(proc)
        proxy.stop()
