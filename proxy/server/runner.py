"""Running one worker process: uvloop, the listening socket, signals, graceful drain."""

from __future__ import annotations

import asyncio
import signal
import sys

import uvloop
from aiohttp import web

from proxy.config import Config
from proxy.observability.logging import configure_logging, get_logger
from proxy.observability.metrics import Metrics
from proxy.observability.request_metrics import RequestMetrics
from proxy.runtime import Runtime
from proxy.server.app import make_app
from proxy.server.state import Server


def describe(config: Config) -> dict[str, str]:
    return {name: f"{p.type} {p.base_url}" for name, p in config.providers.items()}


async def serve_forever(config: Config, *, reuse_port: bool = False) -> None:
    logger = get_logger()
    metrics = Metrics(config.providers)
    runtime = Runtime(config, metrics)
    await runtime.start()
    server = Server(runtime, RequestMetrics(metrics), logger)
    listen = config.server
    app = make_app(server, with_metrics=listen.metrics is None)
    # handler_cancellation: a client that disconnects cancels its handler, which closes the
    # upstream request at once instead of letting it generate tokens nobody reads.
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None,
                           shutdown_timeout=listen.shutdown_grace_seconds)
    await runner.setup()
    site = web.TCPSite(runner, listen.host, listen.port, reuse_port=reuse_port, backlog=4096)
    await site.start()
    metrics_runner = None
    if listen.metrics is not None:
        metrics_app = web.Application()
        metrics_app.router.add_get("/metrics", lambda _: _metrics_response(server))
        metrics_runner = web.AppRunner(metrics_app, access_log=None)
        await metrics_runner.setup()
        await web.TCPSite(metrics_runner, listen.metrics.host, listen.metrics.port, reuse_port=reuse_port).start()
    url = f"http://{listen.host}:{listen.port}"
    logger.info(f"listening on {url}", url=url, providers=describe(config), workers=listen.workers,
                cache=config.cache.backend, config=config.source)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.draining = True
    logger.info("draining", grace_seconds=listen.shutdown_grace_seconds)
    await runner.cleanup()  # stops listening, waits for in-flight requests up to the grace, cancels the rest
    if metrics_runner is not None:
        await metrics_runner.cleanup()
    await runtime.close()
    logger.info("stopped")


async def _metrics_response(server: Server) -> web.Response:
    body, content_type = server.metrics.render()
    return web.Response(body=body, headers={"Content-Type": content_type})


def run_worker(config: Config, *, reuse_port: bool = False) -> int:
    configure_logging(config.logging)
    uvloop.run(serve_forever(config, reuse_port=reuse_port))
    return 0


def main_error(message: str) -> int:
    print(f"switchyard: {message}", file=sys.stderr)
    return 2
