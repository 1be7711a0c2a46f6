"""The response cache (aiocache: in memory by default, in Redis for several instances).

aiocache's package imports redis-py whenever it is installed, to offer its Redis backend, and
redis-py imports OpenTelemetry: about 7 MB of memory and 0.13 s of start-up in every worker,
for nothing when no Redis is configured. That import is guarded by `except ImportError`, so
redis is hidden for the length of aiocache's own import: the Redis backend is then imported by
name where a config asks for it (`store.py`), as are the limiter's and the breakers' Redis
clients (docs/architecture.md, "Heavy imports wait until they are needed").
"""

from __future__ import annotations

import sys


def _import_aiocache_without_redis() -> None:
    if "aiocache" in sys.modules or "redis" in sys.modules:
        return  # too late to matter, or redis is in use already
    sys.modules["redis"] = None  # type: ignore[assignment]  # `import redis` raises ImportError
    try:
        import aiocache  # noqa: F401
    finally:
        del sys.modules["redis"]


_import_aiocache_without_redis()
