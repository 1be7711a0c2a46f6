"""Heavy libraries load only in a worker whose config uses them (docs/architecture.md, "Heavy
imports wait until they are needed"): redis-py (with the OpenTelemetry it imports) costs every
worker about 7 MB and 0.13 s of start-up, for nothing when nothing is in Redis."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Builds and starts what a worker starts (serve_forever's runtime and application), then says
# which of the heavy modules it loaded.
_SCRIPT = textwrap.dedent("""
    import asyncio, sys
    from proxy.config import load_config
    from proxy.observability.metrics import Metrics
    from proxy.runtime import Runtime
    from proxy.server.app import make_app
    from proxy.server.request_metrics import RequestMetrics
    from proxy.server.state import Server

    async def main():
        config = load_config(sys.argv[1])
        metrics = Metrics(config.providers)
        runtime = Runtime(config, metrics)
        await runtime.start()
        make_app(Server(runtime, RequestMetrics(metrics), None), with_metrics=True)
        await runtime.close()
        print(" ".join(m for m in ("redis", "opentelemetry") if m in sys.modules))

    asyncio.run(main())
""")

_CONFIG = """\
server: {{host: 127.0.0.1, port: 8080}}
auth: {{keys: [{{name: k, key: "key-0123456789abcdef"}}]}}
providers:
  openai: {{type: openai, base_url: "http://127.0.0.1:9/v1", api_key: "x"}}
cache: {cache}
"""


def loaded(tmp_path: Path, cache: str) -> str:
    path = tmp_path / "switchyard.yaml"
    path.write_text(_CONFIG.format(cache=cache))
    done = subprocess.run([sys.executable, "-c", _SCRIPT, str(path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_a_worker_with_nothing_in_redis_does_not_load_redis_py(tmp_path):
    assert loaded(tmp_path, "{backend: memory}") == ""


def test_a_worker_with_its_cache_in_redis_loads_it(tmp_path):
    pytest.importorskip("redis")
    assert "redis" in loaded(tmp_path, '{backend: redis, url: "redis://127.0.0.1:6379/15"}').split()
