"""prometheus-client's multiprocess mode, for `--workers N`: where the files live, and what the
parent does when a worker starts or exits."""

from __future__ import annotations

import glob
import os

from prometheus_client import multiprocess as _pc_multiprocess
from prometheus_client import values as _pc_values

ENV_MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


def multiproc_dir() -> str | None:
    """The multiprocess directory from the environment, or None in single-process mode."""
    return (
        os.environ.get(ENV_MULTIPROC_DIR)
        or os.environ.get("prometheus_multiproc_dir")
        or None
    )


def mark_process_dead(pid: int, path: str | None = None) -> None:
    """Forget the live gauges of a worker that exited (call from the parent on worker exit).

    Counters and histograms of the dead worker stay (they are cumulative); its in-flight and
    active-stream contributions disappear. No-op in single-process mode.
    """
    path = path or multiproc_dir()
    if not path or not os.path.isdir(path):
        return
    _pc_multiprocess.mark_process_dead(pid, path)


def clear_multiproc_dir(path: str | None = None) -> None:
    """Remove every ``*.db`` file of a multiprocess directory (parent, before starting workers).

    Files left by a previous run would otherwise be merged into the new run's metrics.
    """
    path = path or multiproc_dir()
    if not path:
        return
    os.makedirs(path, exist_ok=True)
    for f in glob.glob(os.path.join(path, "*.db")):
        try:
            os.remove(f)
        except FileNotFoundError:
            pass


def ensure_value_class(multiprocess: bool) -> None:
    """Make prometheus-client build values of the right kind.

    prometheus-client chooses mmap-backed or in-memory values once, when it is first imported,
    from the environment. The server may set ``PROMETHEUS_MULTIPROC_DIR`` after that import (for
    ``--workers N``), so switch the class here, before any metric of ours is constructed.
    """
    is_mp = bool(getattr(_pc_values.ValueClass, "_multiprocess", False))
    if multiprocess and not is_mp:
        _pc_values.ValueClass = _pc_values.MultiProcessValue()
    elif not multiprocess and is_mp:
        _pc_values.ValueClass = _pc_values.MutexValue
