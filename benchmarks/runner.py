"""Starts the mock, the naive proxies and Switchyard pinned to cores, and runs the load generator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .procs import (
    Service,
    ServiceError,
    children_cpu_seconds,
    cpu_seconds,
    free_port,
    pinned,
    pss_bytes,
    rss_bytes,
    system_busy_seconds,
)
from .scenarios import PATHS, TARGET, Profile, Run, body

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "bench-key"
_SAMPLE_S = 0.2  # RSS sampling period while a run is in flight
SWITCHYARD_CMD = [sys.executable, "-m", "proxy", "serve", "--config"]  # + config path


@dataclass(frozen=True)
class Layout:
    """Which cores the proxies, the mock and the load generator may use (None: anywhere).

    The proxy under test gets cores of its own so that neither the mock nor the generator takes
    CPU from it: on 2 cores the proxy gets one and everything else the other; from 4 cores on,
    half go to the proxy and a quarter each to the mock and the generator.
    """

    proxy: tuple[int, ...] | None
    mock: tuple[int, ...] | None
    gen: tuple[int, ...] | None

    def describe(self) -> str:
        if self.proxy is None:
            return "not pinned"
        return f"proxy on cores {_cores(self.proxy)}, mock on {_cores(self.mock)}, load generator on {_cores(self.gen)}"


def _cores(cpus: tuple[int, ...] | None) -> str:
    return "any" if cpus is None else ",".join(map(str, cpus))


def layout(pin: bool) -> Layout:
    cpus = tuple(sorted(os.sched_getaffinity(0)))
    n = len(cpus)
    if not pin or n < 2:
        return Layout(None, None, None)
    if n < 4:  # 2 cores: proxy | mock + generator; 3: one each
        return Layout(cpus[:1], cpus[1:2], cpus[-1:])
    half, quarter = n // 2, n // 4
    return Layout(cpus[:half], cpus[half : half + quarter], cpus[half + quarter :])


@dataclass
class Stack:
    tmp: Path
    layout: Layout
    services: dict[str, Service] = field(default_factory=dict)  # target name -> process; direct is the mock
    urls: dict[str, str] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)  # target -> reason

    def stop(self) -> None:
        for svc in reversed(list(self.services.values())):
            svc.stop()


def switchyard_config(port: int, mock_port: int, workers: int) -> str:
    mock = f"http://127.0.0.1:{mock_port}"
    providers = "\n".join(f"  {p.provider}: {p.config.format(mock=mock)}" for p in PATHS.values())
    return f"""\
server: {{host: 127.0.0.1, port: {port}, workers: {workers}}}
logging: {{level: info}}
auth:
  keys: [{{name: bench, key: "{API_KEY}"}}]
providers:
{providers}
cache: {{backend: memory}}
"""


def _service(stack: Stack, name: str, argv: list[str], port: int, cpus: tuple[int, ...] | None) -> Service:
    svc = Service(name, argv, f"http://127.0.0.1:{port}/healthz", stack.tmp / f"{name}.log", ROOT, cpus)
    stack.services[name] = svc  # registered before start so the caller's finally always stops it
    svc.start()
    return svc


def start_stack(stack: Stack, targets: set[str], with_switchyard: bool, mock_processes: int) -> None:
    """Fills `stack` as it goes; the mock and naive proxies are required, Switchyard is optional."""
    py = sys.executable
    lay = stack.layout
    mock_port = free_port()
    mock = [py, "-m", "benchmarks.mock_upstream", "--port", str(mock_port), "--processes", str(mock_processes)]
    _service(stack, "direct", mock, mock_port, lay.mock).wait_ready(15)
    stack.urls["direct"] = f"http://127.0.0.1:{mock_port}/v1/completions"
    for name in sorted(targets - {"direct"}, key=list(TARGET).index):
        t = TARGET[name]
        port = free_port()
        if t.kind == "naive":
            argv = [py, "-m", "benchmarks.naive_proxy", "--port", str(port), "--processes", str(t.processes)]
            _service(stack, name, [*argv, "--upstream", f"http://127.0.0.1:{mock_port}/v1"], port, lay.proxy)
            stack.services[name].wait_ready(15)
        elif not with_switchyard:
            stack.unavailable[name] = "skipped (--target naive-only)"
            continue
        else:
            cfg = stack.tmp / f"{name}.yaml"
            cfg.write_text(switchyard_config(port, mock_port, t.processes))
            svc = _service(stack, name, [*SWITCHYARD_CMD, str(cfg)], port, lay.proxy)
            try:
                svc.wait_ready(30)
            except ServiceError as exc:
                stack.unavailable[name] = str(exc)  # reported as-is; never replaced by other numbers
                svc.stop()
                del stack.services[name]
                continue
        stack.urls[name] = f"http://127.0.0.1:{port}/v2/router/completions"


def loadgen_argv(run: Run, url: str, profile: Profile) -> list[str]:
    duration = profile.open if run.mode == "open" else profile.closed
    argv = [
        sys.executable,
        "-m",
        "benchmarks.loadgen",
        "--url",
        url,
        "--mode",
        run.mode,
        "--body",
        json.dumps(body(run.body, run.target, run.path)),
        "--header",
        f"Authorization: Bearer {API_KEY}",
        "--concurrency",
        str(run.concurrency),
        "--rate",
        str(run.rate),
        "--warmup",
        str(profile.warmup),
        "--duration",
        str(duration),
        "--bursts",
        str(profile.bursts),
    ]
    if TARGET[run.target].kind == "switchyard":
        argv += ["--count-header", "x-switchyard-cache"]  # proves the cache scenario really hits
    return argv + (["--stream"] if run.stream else [])


def run_one(run: Run, stack: Stack, profile: Profile) -> dict:
    """One load-generator process against one target, sampling CPU and RSS meanwhile."""
    target = stack.services[run.target]
    argv = loadgen_argv(run, stack.urls[run.target], profile)
    rss_before = peak = rss_bytes(target.pid)
    pss_peak = pss_bytes(target.pid)
    cpu_before = {name: cpu_seconds(svc.pid) for name, svc in stack.services.items()}
    busy_before, gen_before, wall_before = system_busy_seconds(), children_cpu_seconds(), time.monotonic()
    budget = profile.warmup * profile.bursts + max(profile.closed, profile.open) + 60 * profile.bursts
    gen = subprocess.Popen(
        pinned(argv, stack.layout.gen),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + budget
        while gen.poll() is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"load generator exceeded {budget:.0f}s")
            peak = max(peak, rss_bytes(target.pid))
            if run.mode == "burst":  # PSS costs a page-table walk; only the memory scenario needs it
                pss_peak = max(pss_peak, pss_bytes(target.pid))
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
    cpu, done = used[run.target], result["completed_total"]
    result["target"] = run.target
    result["target_cpu_s"] = round(cpu, 3)
    result["target_cpu_util"] = round(cpu / wall, 3)
    # Per completed request, warmup included, because the CPU counter ran for warmup too.
    result["cpu_us_per_request"] = round(cpu / done * 1e6, 1) if done else None
    # The mock's own share: near its core count means the mock, not the target, set the pace.
    result["mock_cpu_util"] = round(used["direct"] / wall, 3)
    result["mock_cpu_us_per_request"] = round(used["direct"] / done * 1e6, 1) if done else None
    result["rss_before_mb"] = round(rss_before / 2**20, 1)
    result["rss_peak_mb"] = round(peak / 2**20, 1)
    result["pss_peak_mb"] = round(pss_peak / 2**20, 1)
    # CPU used by processes that are not ours (other jobs on the box): the noise indicator.
    result["foreign_cpu_cores"] = round(max(0.0, system_busy_seconds() - busy_before - ours) / wall, 2)
    return result
