"""Child processes: free ports, start/ready/stop, and /proc sampling (RSS, CPU) of a process tree."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def serve_forked(processes: int, serve: Callable[[], None]) -> None:
    """Run `serve` in `processes` processes sharing one port (SO_REUSEPORT): the others forked
    before any event loop exists, so nothing is shared but the code; stopped with this one."""
    children = []
    for _ in range(max(1, processes) - 1):
        pid = os.fork()
        if pid == 0:
            try:
                serve()
            finally:
                os._exit(0)
        children.append(pid)
    try:
        serve()
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass


class ServiceError(RuntimeError):
    pass


def free_port() -> int:
    # Bind to port 0 and let the kernel pick; tiny race before the child binds, acceptable on loopback.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_nofile() -> None:
    """1,000 streams need ~3,000 fds across processes; children inherit the raised soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def pinned(argv: list[str], cpus: tuple[int, ...] | None) -> list[str]:
    """argv run pinned to `cpus` from its first instruction (processes it forks inherit it).

    A tiny Python trampoline sets the affinity then execs argv, so the pid is argv's own
    (what /proc sampling needs) and no preexec_fn or external taskset is involved.
    """
    if not cpus:
        return argv
    cores = ",".join(map(str, cpus))
    code = f"import os, sys; os.sched_setaffinity(0, {{{cores}}}); os.execv(sys.argv[1], sys.argv[1:])"
    return [sys.executable, "-c", code, shutil.which(argv[0]) or argv[0], *argv[1:]]


class Service:
    """One child process in its own session, so stop() also reaches any workers it forks."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        health_url: str,
        log_path: Path,
        cwd: Path,
        cpus: tuple[int, ...] | None = None,
    ) -> None:
        self.name = name
        self.cpus = cpus  # pinned to these cores (its forked workers inherit it); None: not pinned
        self.argv = pinned(argv, cpus)
        self.health_url = health_url
        self.log_path = log_path
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float) -> None:
        """Poll GET health_url until 200; fail fast if the process exits."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServiceError(f"{self.name} exited with code {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.health_url, timeout=1.0) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise ServiceError(f"{self.name} not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM the process group, wait up to 5 s, then SIGKILL the group (leftover workers too)."""
        if self.proc is None:
            return
        self._signal_group(signal.SIGTERM)
        try:
            self.proc.wait(5.0)
        except subprocess.TimeoutExpired:
            pass
        self._signal_group(signal.SIGKILL)
        self.proc.wait(5.0)

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, sig)  # pgid == pid: start_new_session made it the group leader
        except (ProcessLookupError, PermissionError):
            pass

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def tree_pids(root: int) -> list[int]:
    """root and all its descendants, from /proc/*/stat parent links."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # comm may contain spaces; fields follow the last ')'
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def rss_bytes(root: int) -> int:
    """Sum of VmRSS over the tree (shared pages of forked workers are counted per process: an upper bound)."""
    total = 0
    for pid in tree_pids(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
    return total


def pss_bytes(root: int) -> int:
    """Sum of Pss over the tree: shared pages split between the processes sharing them, so forked
    workers are not counted twice (but libraries shared with unrelated processes count less too)."""
    total = 0
    for pid in tree_pids(root):
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
    return total


def cpu_seconds(root: int) -> float:
    """user+system CPU time consumed so far by the tree."""
    total = 0
    for pid in tree_pids(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    return total / _CLK_TCK


def system_busy_seconds() -> float:
    """CPU time all cores spent not idle since boot (user+nice+system+irq+softirq+steal)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


def children_cpu_seconds() -> float:
    """CPU time of our reaped children (the load generators; services are reaped only at the end)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime
