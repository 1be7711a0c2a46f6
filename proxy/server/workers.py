"""One process, or N worker processes sharing the port through SO_REUSEPORT.

With N > 1 the parent only supervises: it forks the workers, tells systemd READY=1 once every
worker listens (they report over a pipe), forwards SIGTERM/SIGINT/SIGHUP to them, restarts one
that dies unexpectedly, and keeps prometheus-client's multiprocess directory so /metrics on any
worker reports the sum over all of them. The parent runs no event loop: forking from inside one
would hand the children a running loop.
"""

from __future__ import annotations

import ctypes
import os
import selectors
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
from typing import Any

from proxy.config import Config, ConfigError, load_config
from proxy.observability.logging import configure_logging, flush_logs, get_logger
from proxy.observability.metrics import (
    ENV_MULTIPROC_DIR,
    clear_multiproc_dir,
    mark_process_dead,
    multiproc_dir,
)
from proxy.server import notify
from proxy.server.runner import ignore_stop_signals, run_worker

_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)
_PID = struct.Struct("=i")
_KILL_AFTER = 10.0  # seconds past the grace before a worker that still runs is killed
_PR_SET_PDEATHSIG = 1
_QUICK_DEATH = 5.0  # a worker that dies younger than this is restarted after a pause, not at once


def serve(config: Config) -> int:
    if config.server.workers == 1:
        if multiproc_dir():  # e.g. set by the systemd unit: start from an empty directory
            clear_multiproc_dir()
        return run_worker(config)
    return Supervisor(config).run()


class Supervisor:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.logger: Any = get_logger()
        self.workers: dict[int, float] = {}  # pid -> start time (monotonic)
        self.ready: set[int] = set()
        self.started = False  # every first-generation worker reported ready
        self.stopping = False
        self.kill_at = 0.0
        self.restart_at: list[float] = []  # when to fork replacements
        self.failed = False
        self.parent = os.getpid()

    def run(self) -> int:
        configure_logging(self.config.logging)
        own_dir = _metrics_dir()
        self._sig_r, self._sig_w = os.pipe()
        self._ready_r, self._ready_w = os.pipe()
        for fd in (self._sig_r, self._sig_w, self._ready_r):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self._sig_w, warn_on_full_buffer=False)
        for sig in _SIGNALS:
            signal.signal(sig, lambda *_: None)  # the byte on the wakeup fd is what we act on
        try:
            for _ in range(self.config.server.workers):
                self._spawn()
            self._loop()
        finally:
            ignore_stop_signals()
            signal.set_wakeup_fd(-1)
            for fd in (self._sig_r, self._sig_w, self._ready_r, self._ready_w):
                os.close(fd)
            if own_dir:
                shutil.rmtree(own_dir, ignore_errors=True)
        code = 1 if self.failed else 0
        self.logger.info("stopped", exit_code=code)
        return code

    # ---------------------------------------------------------------- the loop
    def _loop(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._sig_r, selectors.EVENT_READ)
        selector.register(self._ready_r, selectors.EVENT_READ)
        while self.workers or (not self.stopping and self.restart_at):
            now = time.monotonic()
            deadlines = [self.kill_at] if self.stopping else self.restart_at
            timeout = max(0.0, min(deadlines) - now) if deadlines else None
            for key, _ in selector.select(timeout):
                if key.fd == self._sig_r:
                    for signum in _read(self._sig_r):
                        self._on_signal(signum)
                else:
                    self._on_ready(_read(self._ready_r))
            self._reap()
            now = time.monotonic()
            if self.stopping and now >= self.kill_at:
                for pid in self.workers:
                    self.logger.error("worker did not stop in time, killing it", worker=pid)
                    _kill(pid, signal.SIGKILL)
                self.failed = self.failed or bool(self.workers)
                self.kill_at = now + 3600
            while not self.stopping and self.restart_at and self.restart_at[0] <= now:
                self.restart_at.pop(0)
                self._spawn()

    def _on_signal(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            return  # _reap runs after every wake-up
        if signum == signal.SIGHUP:
            if not self.stopping:
                self._reload()
            return
        if not self.stopping:
            self.stopping = True
            notify.stopping()
            grace = self.config.server.shutdown_grace_seconds
            self.kill_at = time.monotonic() + grace + _KILL_AFTER
            self.logger.info("stopping workers", signal=signal.Signals(signum).name, workers=sorted(self.workers))
        for pid in self.workers:
            _kill(pid, signum)

    def _reload(self) -> None:
        # Validate here first: a broken file is reported once, and the workers are not bothered.
        notify.reloading()
        try:
            config = load_config(self.config.source)
        except ConfigError as err:
            self.logger.error(f"config reload failed, keeping the running config: {err}", config=self.config.source)
        else:
            config.server.workers = self.config.server.workers
            self.config = config  # workers forked from now on start with it
            for pid in self.workers:
                _kill(pid, signal.SIGHUP)
        notify.ready()

    def _on_ready(self, data: bytes) -> None:
        for (pid,) in _PID.iter_unpack(data[: len(data) - len(data) % _PID.size]):
            self.ready.add(pid)
        if not self.started and len(self.ready & set(self.workers)) >= self.config.server.workers:
            self.started = True
            self.logger.info("workers ready", workers=sorted(self.workers))
            notify.ready(f"{len(self.workers)} workers")

    def _reap(self) -> None:
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            started = self.workers.pop(pid, None)
            if started is None:
                continue
            mark_process_dead(pid)  # its in-flight gauges no longer count
            code = os.waitstatus_to_exitcode(status)
            if self.stopping:
                self.failed = self.failed or code != 0
                self.logger.info("worker stopped", worker=pid, exit_code=code)
                continue
            if not self.started and pid not in self.ready:
                # A first worker that cannot even start (port taken, bad upstream config): restarting
                # would loop forever; fail so systemd's Restart= and the logs take over.
                self.logger.error("a worker failed at start-up, stopping", worker=pid, exit_code=code)
                self.failed = True
                self._on_signal(signal.SIGTERM)
                continue
            self.ready.discard(pid)
            self.logger.error("worker exited unexpectedly, restarting it", worker=pid, exit_code=code)
            lived = time.monotonic() - started
            self.restart_at.append(time.monotonic() + (1.0 if lived < _QUICK_DEATH else 0.0))
            self.restart_at.sort()

    # ---------------------------------------------------------------- workers
    def _spawn(self) -> None:
        pid = os.fork()
        if pid:
            self.workers[pid] = time.monotonic()
            if self.started:
                self.logger.info("worker started", worker=pid)
            return
        code = 1
        try:
            self._become_worker()
            ready_w = self._ready_w
            code = run_worker(self.config, reuse_port=True,
                              on_ready=lambda: os.write(ready_w, _PID.pack(os.getpid())))
        except BaseException:  # noqa: BLE001 - a child must never return into the parent's loop
            traceback.print_exc()
        finally:
            flush_logs()  # the log is batched; os._exit skips atexit
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _become_worker(self) -> None:
        signal.set_wakeup_fd(-1)
        # Until the worker's event loop installs its own handlers: a stop before it serves
        # anything is a clean exit, a reload is moot (it reads the file anyway).
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: os._exit(0))
        for fd in (self._sig_r, self._sig_w, self._ready_r):
            os.close(fd)
        notify.forget()  # only the parent speaks to systemd
        _drain_when_orphaned(self.parent)


def _metrics_dir() -> str | None:
    """Point prometheus-client's multiprocess mode at an empty directory; returns it if we made it."""
    if multiproc_dir():
        clear_multiproc_dir()  # files of a previous run would be summed into this one
        return None
    path = tempfile.mkdtemp(prefix="switchyard-metrics-")
    os.environ[ENV_MULTIPROC_DIR] = path
    return path


def _drain_when_orphaned(parent: int) -> None:
    """Ask Linux for SIGTERM when the parent dies (e.g. SIGKILL outside systemd), so no worker
    keeps serving on its own."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _read(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
