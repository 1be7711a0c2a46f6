"""structlog set-up: JSON lines on stdout (journald-friendly), a console renderer for humans
when stdout is a terminal. One event per request (request_log.py), written in batches."""

from __future__ import annotations

import asyncio
import atexit
import logging
import sys
from typing import Any

import msgspec
import structlog

from proxy.config import LoggingConfig

_encode = msgspec.json.Encoder(decimal_format="number", enc_hook=str).encode
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure_logging(config: LoggingConfig) -> None:
    console = config.format == "console" or (config.format == "auto" and sys.stdout.isatty())
    processors: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    if console:
        processors.append(structlog.dev.ConsoleRenderer())
        factory: Any = structlog.WriteLoggerFactory(sys.stdout)
    else:
        # msgspec renders to bytes several times faster than json.dumps; one line per event.
        processors.append(structlog.processors.JSONRenderer(serializer=_json_bytes))
        factory = BUFFERED.factory
    BUFFERED.active = not console
    atexit.register(flush_logs)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[config.level]),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )


def _json_bytes(event: dict[str, Any], **_: Any) -> bytes:
    return _encode(event)


class BufferedLines:
    """JSON lines gathered for up to FLUSH_SECONDS and written in one syscall.

    A write per request costs more than the rest of the log event (stdout is a pipe to journald
    or a file); batching keeps lines whole and in order, and adds at most FLUSH_SECONDS before
    a line is visible. Outside an event loop, and for errors, lines are written at once.
    """

    FLUSH_SECONDS = 0.1
    MAX_BYTES = 256 * 1024

    def __init__(self) -> None:
        self.pending = bytearray()
        self.scheduled = False
        self.active = False  # JSON output configured: the request log writes here directly

    def factory(self, *_: Any) -> BufferedLines:
        return self

    def write_line(self, line: bytes, urgent: bool) -> None:
        self.pending += line
        self.pending += b"\n"
        if urgent or len(self.pending) >= self.MAX_BYTES:
            self.flush()
            return
        if not self.scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self.scheduled = True
            loop.call_later(self.FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        self.scheduled = False
        if self.pending:
            out = sys.stdout.buffer
            out.write(self.pending)
            out.flush()
            self.pending.clear()

    def info(self, line: bytes) -> None:
        self.write_line(line, urgent=False)

    debug = msg = info

    def warning(self, line: bytes) -> None:
        self.write_line(line, urgent=True)

    error = critical = exception = warning


BUFFERED = BufferedLines()


def flush_logs() -> None:
    """Write out what is buffered (before exiting)."""
    BUFFERED.flush()


def get_logger(name: str = "switchyard") -> Any:
    return structlog.get_logger(name)
