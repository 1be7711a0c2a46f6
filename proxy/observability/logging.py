"""structlog set-up: JSON lines on stdout (journald-friendly), a console renderer for humans
when stdout is a terminal. One event per request, built by `request_event`."""

from __future__ import annotations

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
        factory = structlog.BytesLoggerFactory(sys.stdout.buffer)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[config.level]),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )


def _json_bytes(event: dict[str, Any], **_: Any) -> bytes:
    return _encode(event)


def get_logger(name: str = "switchyard") -> Any:
    return structlog.get_logger(name)
