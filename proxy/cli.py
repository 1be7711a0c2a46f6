"""`switchyard serve` and `switchyard check-config`."""

from __future__ import annotations

import argparse
import os
import sys
from importlib import metadata
from pathlib import Path

from proxy.config import DEFAULT_CONFIG, ConfigError, load_config
from proxy.prompts import PromptRegistry


def _default_config() -> Path:
    """`$SWITCHYARD_CONFIG`, else ./configs/switchyard.yaml, else the copy shipped in the package."""
    env = os.environ.get("SWITCHYARD_CONFIG")
    if env:
        return Path(env)
    local = Path("configs/switchyard.yaml")
    return local if local.is_file() else DEFAULT_CONFIG


def version() -> str:
    try:
        return metadata.version("switchyard")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="switchyard", description="Async streaming LLM routing proxy")
    parser.add_argument("--version", action="version", version=f"switchyard {version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="run the proxy")
    serve_cmd.add_argument("--config", type=Path, default=None,
                           help="config file; without it: $SWITCHYARD_CONFIG, else ./configs/switchyard.yaml, "
                                "else the copy shipped in the package")
    serve_cmd.add_argument("--workers", type=int, default=None, help="worker processes (overrides server.workers)")
    check = commands.add_parser("check-config", help="validate a config file, report every problem, and exit")
    check.add_argument("file", type=Path)
    args = parser.parse_args(argv)

    path = args.config if args.command == "serve" else args.file
    path = path or _default_config()
    try:
        config = load_config(path)
        PromptRegistry.load(config.prompts.dir)  # stored prompts are part of the config
    except ConfigError as err:
        for line in err.errors:
            print(f"switchyard: config error: {line}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(f"{path}: ok ({len(config.providers)} providers: {', '.join(config.providers)}; "
              f"{len(config.auth.keys)} keys; cache {config.cache.backend})")
        return 0
    if args.workers is not None:
        if args.workers < 1:
            print("switchyard: --workers must be at least 1", file=sys.stderr)
            return 2
        config.server.workers = args.workers
    from proxy.server.workers import serve

    return serve(config)


if __name__ == "__main__":
    sys.exit(main())
