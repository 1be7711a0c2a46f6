"""The layering (docs/architecture.md): every module of `proxy/` imports on its own in a fresh
interpreter (an import cycle fails this), and `proxy.core` imports nothing else of `proxy`."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "proxy"


def modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__main__":
            continue  # running is what it is for: importing it starts the CLI
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_every_module_imports_alone_in_a_fresh_interpreter():
    # One interpreter per module (a shared one would hide cycles behind earlier imports); run in
    # one subprocess that forks per module, to keep this quick on two cores.
    script = (
        "import os, sys, importlib\n"
        "failed = []\n"
        "for name in sys.argv[1:]:\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        try:\n"
        "            importlib.import_module(name)\n"
        "        except BaseException as err:\n"
        "            print(name, type(err).__name__, err, flush=True)\n"
        "            os._exit(1)\n"
        "        os._exit(0)\n"
        "    _, status = os.waitpid(pid, 0)\n"
        "    if status:\n"
        "        failed.append(name)\n"
        "sys.exit(1 if failed else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, *modules()], cwd=ROOT, capture_output=True, text=True,
                          check=False, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("path", sorted((PACKAGE / "core").glob("*.py")), ids=lambda p: p.name)
def test_core_imports_nothing_else_of_proxy(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("proxy"):
            assert node.module.startswith("proxy.core"), f"{path.name} imports {node.module}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                assert not alias.name.startswith("proxy") or alias.name.startswith("proxy.core"), alias.name


def test_no_layer_below_the_pipeline_imports_it():
    for path in PACKAGE.rglob("*.py"):
        top = path.relative_to(PACKAGE).parts[0]
        if top in ("pipeline", "server", "runtime.py", "cli.py", "__main__.py"):
            continue
        text = path.read_text()
        assert "from proxy.pipeline" not in text and "import proxy.pipeline" not in text, path
