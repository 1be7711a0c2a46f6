"""One managed llama.cpp server: started as a child process on a private loopback port, watched,
restarted when it dies, stopped with the proxy.

Ownership: every proxy process owns its own servers. With `--workers N` that means N servers
per `llamacpp` provider (N × `threads` cores, N × the model's RAM): no cross-process hand-over
to get wrong, and a worker that dies takes its server with it (PR_SET_PDEATHSIG in the
launcher). Within one process, servers are shared by launch settings (`POOL`), so a config
reload that leaves a provider's model settings alone keeps its warm server instead of loading
the model again.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import signal
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from proxy.config import StartupError
from proxy.observability.logging import get_logger
from proxy.providers.llamacpp import launcher
from proxy.providers.llamacpp.model import assemble_package

START_TIMEOUT = 120.0  # loading a model from a cold disk; the 241 MiB Gemma takes ~2 s
STOP_TIMEOUT = 3.0  # after SIGTERM, before SIGKILL
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0
STABLE_AFTER = 60.0  # a server that lived this long restarts at once, not after the backoff
_TAIL = 40  # lines of the child's output kept for error messages
_ROOT = str(Path(__file__).resolve().parents[3])  # the folder holding the `proxy` package


class LaunchError(StartupError):
    pass


class PortTaken(LaunchError):
    pass


@dataclass(frozen=True)
class LaunchSpec:
    """What makes two servers interchangeable: equal specs share one process."""

    model_path: str | None
    model_package: str | None
    threads: int
    context: int
    parallel: int


def _private_port() -> int:
    """A free loopback port below the kernel's ephemeral range, so the outgoing connections of
    this machine never take it while the server restarts, and a restart can keep its URL."""
    low = 32768
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    bottom = 10000 if low > 12000 else 1024
    for _ in range(100):
        port = random.randrange(bottom, max(bottom + 1, low))
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise LaunchError("no free loopback port below the ephemeral range")


def rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


class ManagedServer:
    def __init__(self, provider: str, spec: LaunchSpec) -> None:
        self.provider = provider
        self.spec = spec
        self.logger: Any = get_logger().bind(provider=provider)
        self.key = secrets.token_urlsafe(32)  # other local users cannot use the private port
        self.port = 0
        self.model = ""
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self.ready = False  # answering /health; False while it (re)starts
        self.started_at = 0.0
        self.users = 0  # connectors holding it (POOL)
        self._tail: deque[str] = deque(maxlen=_TAIL)
        self._reader: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.process.returncode is None else None

    def status(self) -> dict[str, object]:
        pid = self.pid
        return {"pid": pid, "up": pid is not None and self.ready, "port": self.port, "restarts": self.restarts,
                "rss_bytes": rss_bytes(pid) if pid else None}

    # ------------------------------------------------------------------ start
    async def start(self) -> None:
        began = time.monotonic()
        if self.spec.model_path is not None:
            self.model = self.spec.model_path
        else:
            assert self.spec.model_package is not None
            self.model = str(await asyncio.to_thread(assemble_package, self.spec.model_package))
            self.logger.info("local model ready", model=self.model, package=self.spec.model_package,
                             seconds=round(time.monotonic() - began, 3))
        for attempt in range(3):  # a port taken between the probe and the child's bind: draw another
            self.port = _private_port()
            try:
                await self._launch()
            except PortTaken:
                if attempt == 2:
                    raise
                continue
            self._watcher = asyncio.get_running_loop().create_task(self._watch())
            return

    async def _launch(self) -> None:
        spec = self.spec
        began = time.monotonic()
        env = {**os.environ, launcher.KEY_ENV: self.key,
               "PYTHONPATH": os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))}
        self._tail.clear()
        self.ready = False
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "proxy.providers.llamacpp.launcher", "--model", self.model,
            "--port", str(self.port), "--threads", str(spec.threads), "--context", str(spec.context),
            "--parallel", str(spec.parallel), "--parent", str(os.getpid()),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env=env, start_new_session=True,  # a Ctrl-C in the terminal reaches the proxy, which stops it
        )
        self._reader = asyncio.get_running_loop().create_task(self._read(self.process))
        try:
            await self._wait_ready(self.process, began + START_TIMEOUT)
        except BaseException:
            await self._kill()
            raise
        self.started_at = time.monotonic()
        self.ready = True
        rss = rss_bytes(self.process.pid)
        self.logger.info(
            "llama.cpp server ready", pid=self.process.pid, url=self.base_url, model=self.model,
            startup_seconds=round(self.started_at - began, 3),
            rss_mib=round(rss / 2**20, 1) if rss else None,
            threads=spec.threads, context=spec.context, parallel=spec.parallel, restarts=self.restarts,
        )

    async def _wait_ready(self, process: asyncio.subprocess.Process, deadline: float) -> None:
        url = f"http://127.0.0.1:{self.port}/health"
        timeout = aiohttp.ClientTimeout(total=1.0)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                if process.returncode is not None:
                    error = PortTaken if process.returncode == launcher.EXIT_PORT_TAKEN else LaunchError
                    raise error(self._failure(f"exited with {process.returncode} while starting"))
                try:
                    async with session.get(url) as response:
                        if response.status == 200:
                            return
                except (TimeoutError, aiohttp.ClientError, OSError):
                    pass
                if time.monotonic() > deadline:
                    raise LaunchError(self._failure(f"did not answer /health within {START_TIMEOUT:.0f} s"))
                await asyncio.sleep(0.05)

    def _failure(self, what: str) -> str:
        tail = "\n".join(list(self._tail)[-12:])
        return f"llama.cpp server for provider {self.provider!r} {what} (model {self.model}); its last output:\n{tail}"

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        """Always drained, or a chatty child would block on a full pipe."""
        assert process.stdout is not None
        while True:
            line = await process.stdout.readline()
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip()
            self._tail.append(text)
            self.logger.debug("llama.cpp", line=text)

    # ------------------------------------------------------------------ supervision
    async def _watch(self) -> None:
        backoff = BACKOFF_FIRST
        while True:
            assert self.process is not None
            code = await self.process.wait()
            if self._stopping:
                return
            lived = time.monotonic() - self.started_at
            if lived >= STABLE_AFTER:
                backoff = BACKOFF_FIRST
            self.logger.error("llama.cpp server died, restarting it", pid=self.process.pid, exit_code=code,
                              lived_seconds=round(lived, 1), restart_in_seconds=backoff,
                              output="\n".join(list(self._tail)[-5:]))
            while True:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                self.restarts += 1
                try:
                    await self._launch()  # same port: the connector's URL stays right
                    break
                except LaunchError as err:
                    self.logger.error(f"restart failed, trying again in {backoff:g} s: {err}")

    # ------------------------------------------------------------------ stop
    async def stop(self) -> None:
        self._stopping = True
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        pid = self.pid
        await self._kill()
        if pid is not None:
            self.logger.info("llama.cpp server stopped", pid=pid)

    async def _kill(self) -> None:
        process = self.process
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None


class ServerPool:
    """This process's servers, by launch settings; the last connector to let go stops one."""

    def __init__(self) -> None:
        self.servers: dict[tuple[str, LaunchSpec], ManagedServer] = {}
        self._lock = asyncio.Lock()

    async def acquire(self, provider: str, spec: LaunchSpec) -> ManagedServer:
        async with self._lock:
            server = self.servers.get((provider, spec))
            if server is None:
                server = ManagedServer(provider, spec)
                await server.start()
                self.servers[(provider, spec)] = server
            server.users += 1
            return server

    async def release(self, server: ManagedServer) -> None:
        async with self._lock:
            server.users -= 1
            if server.users > 0:
                return
            self.servers.pop((server.provider, server.spec), None)
        await server.stop()

    def status(self) -> dict[str, dict[str, object]]:
        return {provider: server.status() for (provider, _), server in self.servers.items()}


POOL = ServerPool()


def managed_servers() -> dict[str, dict[str, object]]:
    """For /healthz: the servers of this process, by provider."""
    return POOL.status()
