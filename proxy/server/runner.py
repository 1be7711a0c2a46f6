"""Running one server process: uvloop, the listening socket, signals, graceful drain, reload.

SIGTERM/SIGINT drain: /readyz turns 503, the listener closes, running requests get
`server.shutdown_grace_seconds` to finish, then the rest are cancelled (a stream gets an in-band
error event) and the process exits 0. SIGHUP reloads the config file (proxy/server/reload.py).
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
from collections.abc import Callable
from typing import Any

import uvloop
from aiohttp import web

from proxy.config import Config, StartupError
from proxy.observability.logging import configure_logging, flush_logs, get_logger
from proxy.observability.metrics import Metrics
from proxy.runtime import Runtime
from proxy.server import notify
from proxy.server.app import make_app
from proxy.server.drain import TRACKER, Tracker
from proxy.server.protocol import Runner
from proxy.server.reload import Reloader
from proxy.server.request_metrics import RequestMetrics
from proxy.server.state import Server

# After the grace: how long cancelled requests get to write their error and the sockets to close.
_CLOSE_SECONDS = 2.0


def describe(config: Config) -> dict[str, str]:
    return {name: f"{p.type} {p.base_url or p.model_path or p.model_package}" for name, p in config.providers.items()}


async def serve_forever(config: Config, *, reuse_port: bool = False,
                        on_ready: Callable[[], object] = notify.ready) -> None:
    """Serve until SIGTERM/SIGINT, then drain. `on_ready` runs once the port listens."""
    # Signals first: a SIGTERM that arrives while starting (or right after READY) must drain,
    # not kill the process with the default action.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    logger = get_logger()
    if config.server.workers > 1:
        logger = logger.bind(pid=os.getpid())  # which worker said it
    metrics = Metrics(config.providers)
    runtime = Runtime(config, metrics)
    await runtime.start()
    server = Server(runtime, RequestMetrics(metrics), logger)
    tracker = Tracker(server)
    listen = config.server
    app = make_app(server, with_metrics=listen.metrics is None)
    app[TRACKER] = tracker
    server.tracker = tracker
    # handler_cancellation: a client that disconnects cancels its handler, which closes the
    # upstream request at once instead of letting it generate tokens nobody reads.
    # Runner: protocol errors in our shape, header/idle timeouts, the connection cap (protocol.py).
    runner = Runner(app, listen, logger, handler_cancellation=True, access_log=None, shutdown_timeout=_CLOSE_SECONDS)
    await runner.setup()
    metrics_runner = None
    try:
        site = web.TCPSite(runner, listen.host, listen.port, reuse_port=reuse_port, backlog=4096)
        await site.start()
        if listen.metrics is not None:
            metrics_app = web.Application()
            metrics_app.router.add_get("/metrics", lambda _: _metrics_response(server))
            metrics_runner = web.AppRunner(metrics_app, access_log=None)
            await metrics_runner.setup()
            await web.TCPSite(metrics_runner, listen.metrics.host, listen.metrics.port,
                              reuse_port=reuse_port).start()
    except BaseException:  # e.g. the port is taken: close what was opened, then report it
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        await runner.cleanup()
        await runtime.close()
        raise
    url = f"http://{listen.host}:{listen.port}"
    logger.info(f"listening on {url}", url=url, providers=describe(config), workers=listen.workers,
                cache=config.cache.backend, config=config.source)

    reloader = Reloader(server, tracker, logger)
    reloads: set[asyncio.Task[None]] = set()

    def on_sighup() -> None:
        if server.draining:
            return
        task = loop.create_task(_reload(reloader))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_sighup)
    flush_logs()  # "listening on" is in the log before anyone is told we are ready
    tune_gc()
    on_ready()
    await stop.wait()
    loop.remove_signal_handler(signal.SIGHUP)
    await drain(server, tracker, runner, logger)
    if metrics_runner is not None:
        await metrics_runner.cleanup()
    await asyncio.gather(*reloads, return_exceptions=True)
    await reloader.close()
    await server.runtime.close()
    logger.info("stopped")


async def _reload(reloader: Reloader) -> None:
    notify.reloading()
    try:
        await reloader.reload()
    finally:
        notify.ready()  # reloaded or not, the service serves


async def drain(server: Server, tracker: Tracker, runner: web.AppRunner, logger: Any) -> None:
    grace = server.runtime.config.server.shutdown_grace_seconds
    server.draining = True  # /readyz answers 503 from now on
    notify.stopping()
    logger.info("draining", grace_seconds=grace, requests=tracker.count())
    for site in list(runner.sites):
        await site.stop()  # closes the listening socket: new connections are refused
    if runner.server is not None:
        for connection in list(runner.server.connections):
            connection.close()  # idle keep-alive connections close now, busy ones after their response
    left = await tracker.wait(grace)
    if left:
        logger.warning("grace over, cancelling requests", requests=left)
        tracker.cancel_all()
        await tracker.wait(_CLOSE_SECONDS)
    await tracker.close()
    await runner.cleanup()


async def _metrics_response(server: Server) -> web.Response:
    body, content_type = server.metrics.render()
    return web.Response(body=body, headers={"Content-Type": content_type})


def run_worker(config: Config, *, reuse_port: bool = False,
               on_ready: Callable[[], object] = notify.ready) -> int:
    configure_logging(config.logging)
    try:
        uvloop.run(serve_forever(config, reuse_port=reuse_port, on_ready=on_ready))
    except OSError as err:  # typically the port is taken: one line, not a traceback
        get_logger().error(f"cannot serve: {err}", host=config.server.host, port=config.server.port)
        return 1
    except StartupError as err:
        get_logger().error(f"cannot start: {err}")
        return 1
    finally:
        ignore_stop_signals()
    return 0


# The collector's young generation is collected every 10,000 container allocations instead of
# CPython's 700: a request allocates a few hundred (frames, futures, dicts, structs), so the
# default ran a collection every few requests and cost a fifth of the proxy's CPU; with this,
# disabling the collector altogether measured no faster (README, "Performance"). Older
# generations stay rarer still, since a large in-memory cache would make each of them long.
GC_THRESHOLDS = (10_000, 50, 100)


def tune_gc() -> None:
    """Once started: what start-up built (modules, config, connectors) lives as long as the
    worker, so it is frozen out of every later collection, and the thresholds are raised."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def ignore_stop_signals() -> None:
    """Once drained we are exiting anyway: a repeated SIGTERM (or a second Ctrl-C) must not turn
    the clean exit into death by signal while the interpreter shuts down."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
