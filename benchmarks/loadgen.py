"""uvloop load generator on raw httptools connections, exact percentiles; prints one JSON object.

closed: C workers each send back-to-back on keep-alive connections for warmup+duration -> requests/s.
open:   one request every 1/R s on a fixed schedule; latency runs from the SCHEDULED
        send time, so a stall in the target (or in us) shows up in the tail instead
        of silently delaying the next send (coordinated omission).
burst:  C requests on C fresh connections started at the same instant (then again, --bursts
        times; only the last burst counts, the earlier ones warm the target's upstream pool).
        Time to first byte includes connecting.

Streams: TTFB = first body bytes, latency = end of stream (after ``data: [DONE]``).
Only samples inside the measurement window count: by completion time in closed
mode, by scheduled time in open mode. Percentiles are nearest-rank over every sample.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import resource
import sys
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import uvloop

from .client import Connection, build_request, connect

now = time.perf_counter


@dataclass
class Config:
    url: str
    body: bytes
    headers: dict[str, str]
    stream: bool
    mode: str
    concurrency: int
    rate: float
    warmup: float
    duration: float
    timeout: float
    count_header: str | None = None
    bursts: int = 2


@dataclass
class Recorder:
    window_start: float
    window_end: float
    latencies: list[float] = field(default_factory=list)
    ttfbs: list[float] = field(default_factory=list)
    send_lags: list[float] = field(default_factory=list)
    ok: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    completed_total: int = 0  # warmup included: lets the caller divide target CPU time by it
    chunks_in_window: int = 0
    open_streams: int = 0
    peak_open_streams: int = 0
    header_counts: dict[str, int] = field(default_factory=dict)  # e.g. cache hit/miss, for sanity checks

    def in_window(self, t: float) -> bool:
        return self.window_start <= t < self.window_end

    def on_event(self, t: float, n: int) -> None:
        if self.window_start <= t < self.window_end:
            self.chunks_in_window += n

    def on_open(self, delta: int) -> None:
        self.open_streams += delta
        self.peak_open_streams = max(self.peak_open_streams, self.open_streams)

    def done(self, counted: bool, latency: float, ttfb: float | None, error: str | None) -> None:
        self.completed_total += 1
        if not counted:
            return
        if error is not None:
            self.errors += 1
            self.error_kinds[error] = self.error_kinds.get(error, 0) + 1
            return
        self.ok += 1
        self.latencies.append(latency)
        if ttfb is not None:
            self.ttfbs.append(ttfb)


class Pool:
    """Idle keep-alive connections, most recently used first; a new one when none is idle."""

    def __init__(self, cfg: Config, rec: Recorder) -> None:
        u = urlsplit(cfg.url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.request = build_request(self.host, self.port, u.path or "/", cfg.body, cfg.headers)
        self.cfg, self.rec = cfg, rec
        self.count_header = cfg.count_header.lower().encode() if cfg.count_header else None
        self.idle: list[Connection] = []
        self.all: set[Connection] = set()

    async def get(self) -> Connection:
        while self.idle:
            conn = self.idle.pop()
            if conn.usable:
                return conn
        conn = await asyncio.wait_for(
            connect(self.host, self.port, self.cfg.stream, self.count_header, self.rec.on_event, self.rec.on_open),
            self.cfg.timeout,
        )
        self.all.add(conn)
        return conn

    def put(self, conn: Connection, reuse: bool = True) -> None:
        if reuse and conn.usable:
            self.idle.append(conn)
        else:
            conn.close()
            self.all.discard(conn)

    def close(self) -> None:
        for conn in self.all:
            conn.close()


async def one(pool: Pool, rec: Recorder, t0: float, counted_by_start: bool, reuse: bool = True) -> None:
    cfg = pool.cfg
    ttfb: float | None = None
    error: str | None = None
    end = 0.0
    try:
        conn = await pool.get()
        ex = await conn.exchange(pool.request, cfg.timeout)
        pool.put(conn, reuse and ex.error is None)
        end = ex.end or now()
        if cfg.count_header is not None and rec.in_window(t0) and ex.status:
            value = ex.header_value.decode() if ex.header_value is not None else "<absent>"
            rec.header_counts[value] = rec.header_counts.get(value, 0) + 1
        if ex.error is not None:
            error = ex.error
        elif ex.status != 200:
            error = f"http_{ex.status}"
        elif cfg.stream:
            ttfb = None if ex.ttfb is None else ex.ttfb - t0
            if b"[DONE]" not in ex.tail:
                error = "truncated_stream"
        elif b'"choices"' not in b"".join(ex.body):
            error = "bad_body"
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure is an error sample, never a crash of the generator
        error = type(exc).__name__
    end = end or now()
    rec.done(rec.in_window(t0 if counted_by_start else end), end - t0, ttfb, error)


async def closed_loop(pool: Pool, rec: Recorder, start: float) -> None:
    cfg = pool.cfg
    ramp = min(cfg.warmup / 2, 1.0)  # stagger first sends so C connects don't all hit the accept queue at once

    async def worker(i: int) -> None:
        await asyncio.sleep(ramp * i / cfg.concurrency)
        while (t := now()) < rec.window_end:
            await one(pool, rec, t, counted_by_start=False)

    await asyncio.gather(*(worker(i) for i in range(cfg.concurrency)))


async def open_loop(pool: Pool, rec: Recorder, start: float) -> int:
    """Returns the number of requests still unfinished after the grace period (counted as errors).

    The schedule is kept by a thread in time.sleep (~0.1 ms precise) that wakes the loop for each
    send: loop timers in uvloop tick in whole milliseconds, and their jitter would land in every sample.
    """
    cfg = pool.cfg
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()
    all_sent = asyncio.Event()
    stop = threading.Event()
    total = int(cfg.rate * (cfg.warmup + cfg.duration))

    def fire(scheduled: float) -> None:
        sent = now()
        if rec.in_window(scheduled):
            rec.send_lags.append(sent - scheduled)
        task = loop.create_task(one(pool, rec, scheduled, counted_by_start=True))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def ticker() -> None:
        for i in range(total):
            scheduled = start + i / cfg.rate
            if (d := scheduled - now()) > 0:
                time.sleep(d)
            if stop.is_set():
                return
            loop.call_soon_threadsafe(fire, scheduled)
        loop.call_soon_threadsafe(all_sent.set)

    sys.setswitchinterval(0.0005)  # the ticker must get the GIL promptly even while the loop is busy
    thread = threading.Thread(target=ticker, name="open-loop-ticker", daemon=True)
    thread.start()
    try:
        await all_sent.wait()
    finally:
        stop.set()
    thread.join()
    if not tasks:
        return 0
    _, pending = await asyncio.wait(set(tasks), timeout=cfg.timeout)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return len(pending)


async def bursts(pool: Pool, rec: Recorder) -> float:
    """C requests on C fresh connections at once, cfg.bursts times; only the last one is recorded.

    Returns the measured burst's length in seconds. The earlier bursts are discarded: they fill
    the target's upstream connection pool, so the last one measures accepting and relaying, not
    connecting upstream for the first time.
    """
    cfg = pool.cfg
    elapsed = 0.0
    for b in range(cfg.bursts):
        last = b == cfg.bursts - 1
        r = rec if last else Recorder(0.0, math.inf)
        burst_pool = Pool(cfg, r)  # fresh connections every time: the point is connecting at once
        t0 = now()
        if last:
            rec.window_start, rec.window_end = t0, math.inf
        await asyncio.gather(
            *(one(burst_pool, r, t0, counted_by_start=True, reuse=False) for _ in range(cfg.concurrency))
        )
        elapsed = now() - t0
        burst_pool.close()
        if not last:
            rec.completed_total += r.completed_total
            await asyncio.sleep(cfg.warmup)  # let the target settle between bursts
    return elapsed


def percentiles(samples: list[float]) -> dict[str, float | int] | None:
    """Exact nearest-rank percentiles in milliseconds."""
    if not samples:
        return None
    s = sorted(samples)

    def rank(p: float) -> float:
        return round(s[max(0, math.ceil(p / 100 * len(s)) - 1)] * 1000, 4)

    return {
        "n": len(s),
        "p50": rank(50),
        "p90": rank(90),
        "p99": rank(99),
        "p999": rank(99.9),
        "max": round(s[-1] * 1000, 4),
        "mean": round(sum(s) / len(s) * 1000, 4),
    }


def _cpu_self() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def run(cfg: Config) -> dict:
    wall0, cpu0 = now(), _cpu_self()
    start = now() + 0.05
    rec = Recorder(window_start=start + cfg.warmup, window_end=start + cfg.warmup + cfg.duration)
    pool = Pool(cfg, rec)
    duration = cfg.duration
    try:
        if cfg.mode == "closed":
            await closed_loop(pool, rec, start)
        elif cfg.mode == "open":
            unfinished = await open_loop(pool, rec, start)
            if unfinished:
                rec.errors += unfinished
                rec.error_kinds["unfinished"] = unfinished
        else:
            duration = await bursts(pool, rec)
    finally:
        pool.close()
    wall, cpu = now() - wall0, _cpu_self() - cpu0
    result: dict = {
        "mode": cfg.mode,
        "url": cfg.url,
        "stream": cfg.stream,
        "concurrency": cfg.concurrency,
        "rate": cfg.rate,
        "warmup_s": cfg.warmup,
        "duration_s": round(duration, 3),
        "ok": rec.ok,
        "errors": rec.errors,
        "error_kinds": rec.error_kinds,
        "rps": round(rec.ok / duration, 2) if duration else 0.0,
        "completed_total": rec.completed_total,
        "latency_ms": percentiles(rec.latencies),
        # Near 1.0 means the generator itself was the bottleneck of a closed-loop run.
        "generator_cpu_s": round(cpu, 3),
        "generator_cpu_util": round(cpu / wall, 3),
    }
    if cfg.stream:
        result.update(
            ttfb_ms=percentiles(rec.ttfbs),
            chunks_per_s=round(rec.chunks_in_window / duration, 1) if duration else 0.0,
            peak_open_streams=rec.peak_open_streams,
        )
    if cfg.count_header is not None:
        result["header_counts"] = {cfg.count_header: rec.header_counts}
    if cfg.mode == "open":
        result["send_lag_ms"] = percentiles(rec.send_lags)
    return result


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def parse(argv: list[str] | None = None) -> Config:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--body", required=True, help="JSON request body")
    ap.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    ap.add_argument("--stream", action="store_true", help="read the response as SSE (TTFB, chunks)")
    ap.add_argument("--mode", choices=("closed", "open", "burst"), default="closed")
    ap.add_argument("--concurrency", type=int, default=64, help="closed mode: connections; burst: requests at once")
    ap.add_argument("--rate", type=float, default=300.0, help="open mode: requests per second")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds before the window opens (burst: between)")
    ap.add_argument("--duration", type=float, default=10.0, help="measurement window in seconds")
    ap.add_argument("--bursts", type=int, default=2, help="burst mode: bursts run, only the last is recorded")
    ap.add_argument("--timeout", type=float, default=30.0, help="per request; also the open-mode drain limit")
    ap.add_argument("--count-header", help="tally this response header's values (e.g. a cache hit/miss marker)")
    a = ap.parse_args(argv)
    headers = {"Content-Type": "application/json"}
    for h in a.header:
        name, _, value = h.partition(":")
        headers[name.strip()] = value.strip()
    body = json.dumps(json.loads(a.body), separators=(",", ":")).encode()
    return Config(
        a.url,
        body,
        headers,
        a.stream,
        a.mode,
        a.concurrency,
        a.rate,
        a.warmup,
        a.duration,
        a.timeout,
        a.count_header,
        max(1, a.bursts),
    )


def main(argv: list[str] | None = None) -> None:
    cfg = parse(argv)
    _raise_nofile()
    result = uvloop.run(run(cfg))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
