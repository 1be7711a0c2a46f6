"""Starts the mock, the naive proxy and Switchyard, and runs the load generator against them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .procs import Service, ServiceError, children_cpu_seconds, cpu_seconds, free_port, rss_bytes, system_busy_seconds
from .scenarios import Profile, Run, body

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "bench-key"
_SAMPLE_S = 0.2  # RSS sampling period while a run is in flight
SWITCHYARD_CMD = [sys.executable, "-m", "proxy", "serve", "--config"]  # + config path


@dataclass
class Stack:
    tmp: Path
    services: dict[str, Service] = field(default_factory=dict)  # direct -> the mock itself
    urls: dict[str, str] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)  # target -> reason

    def stop(self) -> None:
        for svc in reversed(list(self.services.values())):
            svc.stop()


def switchyard_config(port: int, mock_port: int) -> str:
    mock = f"http://127.0.0.1:{mock_port}"
    return f"""\
server: {{host: 127.0.0.1, port: {port}, workers: 1}}
logging: {{level: info}}
auth:
  keys: [{{name: bench, key: "{API_KEY}"}}]
providers:
  mock: {{type: openai, base_url: "{mock}/v1", api_key: "x"}}
  dead: {{type: openai, base_url: "{mock}/fail/v1", api_key: "x"}}
cache: {{backend: memory}}
"""


def _service(stack: Stack, name: str, argv: list[str], port: int) -> Service:
    svc = Service(name, argv, f"http://127.0.0.1:{port}/healthz", stack.tmp / f"{name}.log", ROOT)
    stack.services[name] = svc  # registered before start so the caller's finally always stops it
    svc.start()
    return svc


def start_stack(stack: Stack, with_switchyard: bool) -> None:
    """Fills `stack` as it goes; the mock and naive proxy are required, Switchyard is optional."""
    py = sys.executable
    mock_port, naive_port, sy_port = free_port(), free_port(), free_port()
    _service(stack, "direct", [py, "-m", "benchmarks.mock_upstream", "--port", str(mock_port)], mock_port).wait_ready(
        15
    )
    stack.urls["direct"] = f"http://127.0.0.1:{mock_port}/v1/completions"
    naive = [
        py,
        "-m",
        "benchmarks.naive_proxy",
        "--port",
        str(naive_port),
        "--upstream",
        f"http://127.0.0.1:{mock_port}/v1",
    ]
    _service(stack, "naive", naive, naive_port).wait_ready(15)
    stack.urls["naive"] = f"http://127.0.0.1:{naive_port}/v2/router/completions"
    if not with_switchyard:
        stack.unavailable["switchyard"] = "skipped (--target naive-only)"
        return
    cfg = stack.tmp / "switchyard.yaml"
    cfg.write_text(switchyard_config(sy_port, mock_port))
    svc = _service(stack, "switchyard", [*SWITCHYARD_CMD, str(cfg)], sy_port)
    try:
        svc.wait_ready(30)
    except ServiceError as exc:
        stack.unavailable["switchyard"] = str(exc)  # reported as-is; never replaced by other numbers
        svc.stop()
        del stack.services["switchyard"]
        return
    stack.urls["switchyard"] = f"http://127.0.0.1:{sy_port}/v2/router/completions"


def loadgen_argv(run: Run, url: str, profile: Profile) -> list[str]:
    warmup, duration = (
        (profile.soak_warmup, profile.soak)
        if run.soak
        else (profile.warmup, profile.closed if run.mode == "closed" else profile.open)
    )
    argv = [
        sys.executable,
        "-m",
        "benchmarks.loadgen",
        "--url",
        url,
        "--mode",
        run.mode,
        "--body",
        json.dumps(body(run.body, run.target)),
        "--header",
        f"Authorization: Bearer {API_KEY}",
        "--concurrency",
        str(run.concurrency),
        "--rate",
        str(run.rate),
        "--warmup",
        str(warmup),
        "--duration",
        str(duration),
    ]
    if run.target == "switchyard":
        argv += ["--count-header", "x-switchyard-cache"]  # proves the cache scenario really hits
    return argv + (["--stream"] if run.stream else [])


def run_one(run: Run, stack: Stack, profile: Profile) -> dict:
    """One load-generator process against one target, sampling CPU and RSS meanwhile."""
    target = stack.services[run.target]
    argv = loadgen_argv(run, stack.urls[run.target], profile)
    rss_before = peak = rss_bytes(target.pid)
    cpu_before = {name: cpu_seconds(svc.pid) for name, svc in stack.services.items()}
    busy_before, gen_before, wall_before = system_busy_seconds(), children_cpu_seconds(), time.monotonic()
    budget = profile.soak_warmup + profile.soak + profile.warmup + profile.open + 90  # covers drain + startup
    gen = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + budget
        while gen.poll() is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"load generator exceeded {budget:.0f}s")
            peak = max(peak, rss_bytes(target.pid))
            time.sleep(_SAMPLE_S)
        out, err = gen.communicate()
    finally:
        if gen.poll() is None:
            gen.kill()
            gen.wait()
    if gen.returncode != 0:
        raise RuntimeError(f"load generator failed ({gen.returncode}): {err.decode(errors='replace')[-2000:]}")
    wall = time.monotonic() - wall_before
    # max(0, ...): a process that died meanwhile reads as 0 s.
    used = {name: max(0.0, cpu_seconds(svc.pid) - cpu_before[name]) for name, svc in stack.services.items()}
    ours = sum(used.values()) + children_cpu_seconds() - gen_before
    result: dict = json.loads(out.decode().strip().splitlines()[-1])
    cpu = used[run.target]
    result["target"] = run.target
    result["target_cpu_s"] = round(cpu, 3)
    result["target_cpu_util"] = round(cpu / wall, 3)
    # Per completed request, warmup included, because the CPU counter ran for warmup too.
    result["cpu_us_per_request"] = (
        round(cpu / result["completed_total"] * 1e6, 1) if result["completed_total"] else None
    )
    result["rss_before_mb"] = round(rss_before / 2**20, 1)
    result["rss_peak_mb"] = round(peak / 2**20, 1)
    # CPU used by processes that are not ours (other jobs on the box): the noise indicator.
    result["foreign_cpu_cores"] = round(max(0.0, system_busy_seconds() - busy_before - ours) / wall, 2)
    return result
