"""Check that every PromQL expression of the Grafana dashboard and the alert rules is valid.

Reusable pieces (the integration tests import them):

* ``dashboard_expressions(path)``: every panel target ``expr`` of a Grafana dashboard JSON, with the
  dashboard variables (``$provider``, ``$model``, ``$__rate_interval``...) substituted by valid values.
* ``rule_expressions(path)``: every ``expr`` of a Prometheus rules file.
* ``query(base_url, expr)`` / ``check_expressions(base_url, exprs)``: run them through a Prometheus
  HTTP API (``/api/v1/query``).

Run as a script it is self-contained: it serves ``/metrics`` from a real ``Metrics`` instance on an
aiohttp server with scripted traffic, starts a throw-away ``prometheus`` (from PATH; on Debian
``apt-get install prometheus``) on a loopback port scraping it every second, and queries every
expression::

    python tests/promql_check.py                       # dashboard + alert rules, must all succeed
    python tests/promql_check.py --require-data        # ...and every dashboard panel must return data
    python tests/promql_check.py --url http://127.0.0.1:9090   # against an already running Prometheus

Exit status 0 when every query returned ``status: success``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "configs" / "grafana" / "switchyard.json"
ALERTS = REPO / "configs" / "prometheus" / "alerts.yml"

# Values that make every dashboard expression valid PromQL. Multi-value variables with "All" render
# as the allValue ".*" inside =~ matchers; a concrete value must also work.
DEFAULT_VARIABLES: dict[str, str] = {
    "provider": ".*",
    "model": ".*",
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
    "__interval_ms": "15000",
}

_VAR = re.compile(r"\$\{(\w+)(?::[\w]+)?\}|\[\[(\w+)(?::[\w]+)?\]\]|\$(\w+)")


def substitute(expr: str, variables: dict[str, str] | None = None) -> str:
    """Replace Grafana variables ($x, ${x}, ${x:fmt}, [[x]]) in expr; unknown variables raise KeyError."""
    values = dict(DEFAULT_VARIABLES)
    if variables:
        values.update(variables)

    def repl(m: re.Match) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in values:
            raise KeyError(f"unknown dashboard variable ${name} in {expr!r}")
        return values[name]

    return _VAR.sub(repl, expr)


def _panels(panels: Iterable[dict]) -> Iterable[dict]:
    for p in panels:
        yield p
        yield from _panels(p.get("panels") or [])  # rows (collapsed or not) nest panels


def dashboard_expressions(
    path: str | os.PathLike = DASHBOARD, variables: dict[str, str] | None = None
) -> list[str]:
    """Every target expression of the dashboard's panels, variables substituted, duplicates removed
    (first occurrence order)."""
    with open(path, encoding="utf-8") as f:
        dash = json.load(f)
    out: list[str] = []
    for panel in _panels(dash.get("panels") or []):
        for target in panel.get("targets") or []:
            expr = (target.get("expr") or "").strip()
            if expr:
                expr = substitute(expr, variables)
                if expr not in out:
                    out.append(expr)
    return out


def dashboard_panel_titles(
    path: str | os.PathLike = DASHBOARD, variables: dict[str, str] | None = None
) -> dict[str, str]:
    """expression (substituted) -> title of the first panel using it; for readable reports."""
    with open(path, encoding="utf-8") as f:
        dash = json.load(f)
    out: dict[str, str] = {}
    for panel in _panels(dash.get("panels") or []):
        for target in panel.get("targets") or []:
            expr = (target.get("expr") or "").strip()
            if expr:
                out.setdefault(substitute(expr, variables), panel.get("title", ""))
    return out


def rule_expressions(path: str | os.PathLike = ALERTS) -> list[str]:
    """Every alerting/recording rule expression of a Prometheus rules file."""
    import yaml

    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    return [
        r["expr"].strip() for g in doc.get("groups") or [] for r in g.get("rules") or []
    ]


# ---------------------------------------------------------------------------------- querying
async def query(session, base_url: str, expr: str) -> dict:
    """POST /api/v1/query; returns the decoded JSON body (``status`` is "success" or "error")."""
    async with session.post(
        base_url.rstrip("/") + "/api/v1/query", data={"query": expr}
    ) as resp:
        try:
            return await resp.json(content_type=None)
        except Exception:  # noqa: BLE001
            return {
                "status": "error",
                "error": f"HTTP {resp.status}: {await resp.text()}",
            }


async def check_expressions(
    base_url: str, exprs: Iterable[str]
) -> list[tuple[str, dict]]:
    """Query every expression; returns [(expr, response json)] in order."""
    import aiohttp

    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=30)
    ) as session:
        return [(e, await query(session, base_url, e)) for e in exprs]


def result_count(body: dict) -> int:
    data = body.get("data") or {}
    res = data.get("result")
    if data.get("resultType") in ("scalar", "string"):
        return 1
    return len(res or [])


# ---------------------------------------------------------------------------------- demo target
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _simulate_one(m, rng: random.Random) -> None:
    """One scripted request through the Metrics API, covering every metric and error path."""
    provider, model = rng.choice(
        [("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("claude", "sonnet")]
    )
    stream = rng.random() < 0.5
    m.request_started(stream)
    hit = rng.random() < 0.3
    m.cache_result("hit" if hit else ("miss" if rng.random() < 0.95 else "error"))
    status, waited = 200, 0.0
    if not hit:
        roll = rng.random()
        if roll < 0.1:  # rate limited, retried, then OK
            m.upstream_finished(
                provider=provider, model=model, status="429", duration_s=0.05
            )
            m.retry(provider=provider, model=model)
        elif roll < 0.15:  # timed out, fell back
            m.upstream_finished(
                provider=provider, model=model, status="timeout", duration_s=30.0
            )
            m.fallback(provider=provider, model=model)
            provider, model = "claude", "sonnet"
        elif roll < 0.2:  # upstream 5xx, no fallback left
            m.upstream_finished(
                provider=provider, model=model, status="503", duration_s=0.2
            )
            status = 503
        elif roll < 0.22:
            m.upstream_finished(
                provider=provider,
                model=model,
                status="connection_error",
                duration_s=0.001,
            )
            status = 502
        if status == 200:
            waited = rng.uniform(0.2, 3.0)
            m.upstream_finished(
                provider=provider, model=model, status="200", duration_s=waited
            )
            m.first_token(provider=provider, model=model, seconds=rng.uniform(0.1, 0.8))
            m.tokens(
                provider=provider,
                model=model,
                prompt=rng.randint(10, 500),
                completion=rng.randint(1, 300),
            )
    elif stream:
        m.first_token(provider=provider, model=model, seconds=rng.uniform(0.001, 0.01))
    if rng.random() < 0.03:
        provider, model, status = "", "", 401  # rejected before routing
    overhead = rng.uniform(0.0001, 0.002)
    m.request_finished(
        route="/v2/router/completions",
        provider=provider,
        model=model,
        status=status,
        cache="hit" if hit else "miss",
        stream=stream,
        duration_s=waited + overhead,
        overhead_s=overhead,
    )


async def serve_demo_metrics(port: int, rate_per_s: float = 50.0):
    """aiohttp server with GET /metrics backed by a Metrics instance fed with scripted traffic.

    Returns (runner, traffic task); stop with ``task.cancel(); await runner.cleanup()``.
    """
    from aiohttp import web

    sys.path.insert(0, str(REPO))
    from proxy.observability.metrics import Metrics

    m = Metrics(["openai", "claude"], version="promql-check")

    async def metrics_handler(_request):
        body, ctype = m.render()
        return web.Response(body=body, headers={"Content-Type": ctype})

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()

    async def traffic():
        rng = random.Random(42)
        m.request_started(True)  # one long-lived stream, so the gauges are non-zero
        while True:
            for _ in range(max(1, int(rate_per_s / 10))):
                _simulate_one(m, rng)
            await asyncio.sleep(0.1)

    return runner, asyncio.create_task(traffic())


def start_prometheus(
    binary: str, listen_port: int, target_port: int, workdir: str
) -> subprocess.Popen:
    """A throw-away prometheus scraping 127.0.0.1:target_port every second; its output
    goes to workdir/prometheus.log."""
    cfg = Path(workdir) / "prometheus.yml"
    cfg.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: switchyard\n    metrics_path: /metrics\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
    )
    with open(
        Path(workdir) / "prometheus.log", "wb"
    ) as log:  # the child keeps its copy
        return subprocess.Popen(
            [
                binary,
                f"--config.file={cfg}",
                f"--storage.tsdb.path={Path(workdir) / 'data'}",
                f"--web.listen-address=127.0.0.1:{listen_port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def stop_process(proc: subprocess.Popen, grace: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def wait_for_data(base_url: str, timeout: float = 60.0, samples: int = 4) -> None:
    """Until Prometheus is ready and has scraped the target `samples` times."""
    import aiohttp

    deadline = asyncio.get_running_loop().time() + timeout
    expr = 'count_over_time(switchyard_build_info{job="switchyard"}[1m])'
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while True:
            try:
                body = await query(session, base_url, expr)
                res = (body.get("data") or {}).get("result") or []
                if res and float(res[0]["value"][1]) >= samples:
                    return
            except (TimeoutError, aiohttp.ClientError, OSError):
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(
                    f"Prometheus at {base_url} has no data after {timeout}s"
                )
            await asyncio.sleep(0.5)


async def run_local_check(
    prometheus_bin: str | None = None,
    dashboard: Path = DASHBOARD,
    alerts: Path = ALERTS,
    require_data: bool = False,
    verbose: bool = True,
) -> bool:
    binary = prometheus_bin or shutil.which("prometheus")
    if not binary:
        raise FileNotFoundError(
            "prometheus binary not found (Debian: apt-get install -y prometheus)"
        )
    target_port, prom_port = free_port(), free_port()
    base = f"http://127.0.0.1:{prom_port}"
    runner, traffic = await serve_demo_metrics(target_port)
    with tempfile.TemporaryDirectory(prefix="promql-check-") as tmp:
        proc = start_prometheus(binary, prom_port, target_port, tmp)
        try:
            try:
                await wait_for_data(base)
            except TimeoutError:
                log = (Path(tmp) / "prometheus.log").read_text(errors="replace")
                print(f"prometheus output:\n{log[-4000:]}", file=sys.stderr)
                raise
            return await report(base, dashboard, alerts, require_data, verbose)
        finally:
            await asyncio.to_thread(stop_process, proc)
            traffic.cancel()
            await runner.cleanup()


async def report(
    base_url: str,
    dashboard: Path,
    alerts: Path | None,
    require_data: bool,
    verbose: bool,
) -> bool:
    concrete = {
        "provider": "openai",
        "model": "gpt-4o",
    }  # a concrete variable value must work too
    titles = {
        **dashboard_panel_titles(dashboard, concrete),
        **dashboard_panel_titles(dashboard),
    }
    ok = True
    groups = [("dashboard", dashboard_expressions(dashboard), require_data)]
    if alerts is not None:
        groups.append(
            ("alert rule", rule_expressions(alerts), False)
        )  # alerts are normally empty
    groups.append(
        (
            "dashboard (provider=openai, model=gpt-4o)",
            dashboard_expressions(dashboard, concrete),
            False,
        )
    )
    for kind, exprs, need_data in groups:
        for expr, body in await check_expressions(base_url, exprs):
            n = result_count(body) if body.get("status") == "success" else 0
            bad = body.get("status") != "success" or (need_data and n == 0)
            ok &= not bad
            if verbose or bad:
                label = titles.get(expr, "")
                status = (
                    body.get("status")
                    if body.get("status") != "success" or n
                    else "success (no data)"
                )
                print(
                    f"[{'FAIL' if bad else 'ok  '}] {kind}: {label} -> {status}, {n} series"
                    f"{': ' + str(body.get('error')) if body.get('error') else ''}\n        {expr}"
                )
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dashboard", type=Path, default=DASHBOARD)
    ap.add_argument("--alerts", type=Path, default=ALERTS)
    ap.add_argument(
        "--url", help="query this running Prometheus instead of starting one"
    )
    ap.add_argument("--prometheus", help="prometheus binary (default: from PATH)")
    ap.add_argument(
        "--require-data",
        action="store_true",
        help="every dashboard expression must return data",
    )
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.url:
        ok = asyncio.run(
            report(
                args.url, args.dashboard, args.alerts, args.require_data, not args.quiet
            )
        )
    else:
        ok = asyncio.run(
            run_local_check(
                args.prometheus,
                args.dashboard,
                args.alerts,
                args.require_data,
                not args.quiet,
            )
        )
    print("all expressions valid" if ok else "SOME EXPRESSIONS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
