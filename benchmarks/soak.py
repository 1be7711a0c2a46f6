"""A bounded soak: a few minutes of mixed traffic with disconnects against Switchyard and the mock
upstream, reporting the proxy's RSS and open file descriptors at the start and at the end.

    python -m benchmarks.soak [--seconds 180] [--concurrency 12]

The mix, round-robin per client task: plain requests, streams, streams the client drops after
the first event, plain requests dropped before the answer, cache hits, a fallback from a failing
provider, 400s, 401s, malformed HTTP, and heads left unfinished (the header timeout closes them).
"Start" is measured after a warm-up round of every kind, "end" after the traffic stops; both after
SETTLE_SECONDS of quiet, longer than the idle timeout of client connections (5 s here) and of the
proxy's pooled upstream connections (aiohttp's 15 s), so growth between them is what a leak would
show, not a connection still pooled.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp

from .procs import Service, free_port, raise_nofile, rss_bytes, tree_pids
from .runner import API_KEY, ROOT, SWITCHYARD_CMD

URL_PATH = "/v2/router/completions"
SETTLE_SECONDS = 20.0
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def config(port: int, mock_port: int) -> str:
    mock = f"http://127.0.0.1:{mock_port}"
    return f"""\
server: {{host: 127.0.0.1, port: {port}, workers: 1, header_timeout_seconds: 2, idle_timeout_seconds: 5}}
logging: {{level: warning}}
auth:
  keys: [{{name: soak, key: "{API_KEY}"}}]
providers:
  mock: {{type: openai, base_url: "{mock}/v1", api_key: "x"}}
  dead: {{type: openai, base_url: "{mock}/fail/v1", api_key: "x"}}
cache: {{backend: memory, max_entries: 1000}}
"""


def open_fds(root: int) -> int:
    total = 0
    for pid in tree_pids(root):
        try:
            total += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            continue
    return total


class Traffic:
    def __init__(self, base: str, port: int) -> None:
        self.base = base
        self.port = port
        self.counts: Counter[str] = Counter()
        self.unexpected: Counter[str] = Counter()
        self.n = 0

    def expect(self, kind: str, status: int, allowed: tuple[int, ...]) -> None:
        self.counts[kind] += 1
        if status not in allowed:
            self.unexpected[f"{kind}:{status}"] += 1

    async def one(self, session: aiohttp.ClientSession, kind: str) -> None:
        self.n += 1
        unique = f"soak {self.n}"
        url = self.base + URL_PATH
        if kind == "plain":
            async with session.post(url, json={"model": "mock/m", "prompt": unique}, headers=AUTH) as r:
                await r.read()
                self.expect(kind, r.status, (200,))
        elif kind == "stream":
            body = {"model": "mock/stream-20x2", "prompt": unique, "stream": True}
            async with session.post(url, json=body, headers=AUTH) as r:
                text = await r.read()
                self.expect(kind, r.status if text.endswith(b"data: [DONE]\n\n") else -1, (200,))
        elif kind == "stream-dropped":  # the client goes away after the first event
            body = {"model": "mock/stream-50x20", "prompt": unique, "stream": True}
            async with session.post(url, json=body, headers=AUTH) as r:
                await r.content.readuntil(b"\n\n")
                self.expect(kind, r.status, (200,))
                r.close()
        elif kind == "plain-dropped":  # gone before the answer: a slow stream asked as a whole
            body = {"model": "mock/stream-40x25", "prompt": unique}
            try:
                async with asyncio.timeout(0.1):
                    async with session.post(url, json=body, headers=AUTH) as r:
                        await r.read()
            except TimeoutError:
                pass
            self.counts[kind] += 1
        elif kind == "cache-hit":
            body = {"model": "mock/m", "prompt": "soak cached", "cache": {"type": "exact_match", "ttl": 3600}}
            async with session.post(url, json=body, headers=AUTH) as r:
                await r.read()
                self.expect(kind, r.status, (200,))
        elif kind == "fallback":
            body = {"model": "dead/m", "prompt": unique, "fallbacks": [{"model": "mock/m"}]}
            async with session.post(url, json=body, headers=AUTH) as r:
                await r.read()
                self.expect(kind, r.status, (200,))
        elif kind == "bad-request":
            async with session.post(url, json={"model": "mock/m", "prompt": "x", "temperature": 9},
                                    headers=AUTH) as r:
                await r.read()
                self.expect(kind, r.status, (400,))
        elif kind == "unauthorized":
            async with session.post(url, json={"model": "mock/m", "prompt": "x"},
                                    headers={"Authorization": "Bearer wrong-key-123"}) as r:
                await r.read()
                self.expect(kind, r.status, (401,))
        elif kind == "malformed":
            reply = await asyncio.to_thread(self._raw, b"POST / HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n", True)
            self.expect(kind, int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.") else -1, (400,))
        elif kind == "unfinished-head":
            await asyncio.to_thread(self._raw, b"POST /v2/router/completions HTTP/1.1\r\nHost: x\r\n", False)
            self.counts[kind] += 1

    def _raw(self, data: bytes, read: bool) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(data)
            return sock.recv(4096) if read else b""

    async def run(self, seconds: float, concurrency: int) -> None:
        kinds = ["plain", "stream", "stream-dropped", "plain-dropped", "cache-hit", "fallback", "plain",
                 "stream", "bad-request", "unauthorized", "malformed", "unfinished-head"]
        deadline = time.monotonic() + seconds
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

            async def client(offset: int) -> None:
                i = offset
                while time.monotonic() < deadline:
                    kind = kinds[i % len(kinds)]
                    i += 1
                    try:
                        await self.one(session, kind)
                    except (aiohttp.ClientError, OSError, TimeoutError) as err:
                        self.unexpected[f"{kind}:{type(err).__name__}"] += 1

            await asyncio.gather(*(client(k) for k in range(concurrency)))


def measure(pid: int) -> tuple[float, int]:
    return rss_bytes(pid) / 2**20, open_fds(pid)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=180.0, help="traffic duration (default 180)")
    ap.add_argument("--concurrency", type=int, default=12, help="client tasks (default 12)")
    args = ap.parse_args(argv)
    raise_nofile()
    tmp = Path(tempfile.mkdtemp(prefix="switchyard-soak-"))
    mock_port, port = free_port(), free_port()
    py = sys.executable
    mock = Service("mock", [py, "-m", "benchmarks.mock_upstream", "--port", str(mock_port)],
                   f"http://127.0.0.1:{mock_port}/healthz", tmp / "mock.log", ROOT)
    (tmp / "switchyard.yaml").write_text(config(port, mock_port))
    proxy = Service("switchyard", [*SWITCHYARD_CMD, str(tmp / "switchyard.yaml")], f"http://127.0.0.1:{port}/healthz",
                    tmp / "switchyard.log", ROOT)
    try:
        mock.start()
        mock.wait_ready(15)
        proxy.start()
        proxy.wait_ready(30)
        base = f"http://127.0.0.1:{port}"
        warm = Traffic(base, port)
        asyncio.run(warm.run(3.0, args.concurrency))  # every kind once or more: pools, caches, imports
        time.sleep(SETTLE_SECONDS)
        start = measure(proxy.pid)
        samples = [(0.0, *start)]
        traffic = Traffic(base, port)
        began = time.monotonic()

        async def sample_while_running() -> None:
            task = asyncio.create_task(traffic.run(args.seconds, args.concurrency))
            while not task.done():
                await asyncio.sleep(min(30.0, args.seconds / 6))
                samples.append((time.monotonic() - began, *measure(proxy.pid)))
            await task

        asyncio.run(sample_while_running())
        time.sleep(SETTLE_SECONDS)
        end = measure(proxy.pid)
        samples.append((time.monotonic() - began, *end))
        alive = proxy.proc is not None and proxy.proc.poll() is None
        log = (tmp / "switchyard.log").read_text(errors="replace")
    finally:
        proxy.stop()
        mock.stop()
    total = sum(traffic.counts.values())
    print(f"soak: {args.seconds:.0f} s, {args.concurrency} clients, {total} requests "
          f"({total / args.seconds:.0f}/s), proxy alive at the end: {alive}")
    print(f"{'':>10} {'RSS MB':>8} {'open fds':>9}")
    print(f"{'start':>10} {start[0]:8.1f} {start[1]:9d}")
    print(f"{'end':>10} {end[0]:8.1f} {end[1]:9d}")
    print("samples (s, RSS MB, fds): " + ", ".join(f"({t:.0f}, {r:.1f}, {f})" for t, r, f in samples))
    print("requests: " + json.dumps(dict(sorted(traffic.counts.items()))))
    print("unexpected: " + json.dumps(dict(traffic.unexpected)))
    print(f"tracebacks in the proxy log: {log.count('Traceback')}")
    return 0 if alive and not log.count("Traceback") else 1


if __name__ == "__main__":
    sys.exit(main())
