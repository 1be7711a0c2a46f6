"""structlog set-up: JSON lines on stdout (journald-friendly), a console renderer for humans
when stdout is a terminal. One event per request, built by `request_event`."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from proxy.config import LoggingConfig

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure_logging(config: LoggingConfig) -> None:
    console = config.format == "console" or (config.format == "auto" and sys.stdout.isatty())
    renderer: Any = structlog.dev.ConsoleRenderer() if console else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[config.level]),
        logger_factory=structlog.WriteLoggerFactory(sys.stdout),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "switchyard") -> Any:
    return structlog.get_logger(name)
