"""One process, or N worker processes sharing the port through SO_REUSEPORT."""

from __future__ import annotations

from proxy.config import Config
from proxy.server.runner import run_worker


def serve(config: Config) -> int:
    if config.server.workers == 1:
        return run_worker(config)
    raise NotImplementedError("several workers arrive with the operations issue")
