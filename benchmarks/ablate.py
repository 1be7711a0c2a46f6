"""Switchyard with some of its per-request work left out, to measure what each part costs.

    python -m benchmarks.ablate --without log --without metrics --config switchyard.yaml

Runs `python -m proxy serve --config ...` after replacing the named parts with no-ops. It exists
for `python -m benchmarks.instructions --budget`, which compares the instruction counts with
and without each part; a proxy started this way is not a working gateway (no log line, no
metrics, streams relayed unrewritten) and is never used for anything else.

Every part is named by where it lives; a name that no longer resolves stops the run instead of
measuring nothing.
"""

from __future__ import annotations

import argparse
import importlib
import runpy
import sys
from collections.abc import Callable
from typing import Any


def _nothing(*_args: Any, **_kwargs: Any) -> None:
    return None


def _no_checks(*_args: Any, **_kwargs: Any) -> list[Any]:
    return []


def _no_headers(_call: Any) -> dict[str, str]:
    return {}


def _relay_as_is(self: Any, data: bytes) -> None:
    """The OpenAI stream translator's feed, as a byte relay: no parsing, no spec rewrite."""
    self.output += data
    self.content_seen = True
    if data.endswith(b"data: [DONE]\n\n"):
        self.finished = True


# Stages that pass a benchmark request straight on (no limits, template, knowledge base, cache
# or timeout asked for): the cost of the stage layer itself.
_IDLE_STAGES = ("AuthorizeStage", "LimitStage", "TemplatingStage", "KnowledgeStage", "SupportStage", "CacheStage",
                "TimeoutStage")


def _without_idle_stages(compose: Callable[..., Any]) -> Callable[..., Any]:
    def composed(stages: list[Any], last: Any) -> Any:
        kept = [s for s in stages if type(s).__name__ not in _IDLE_STAGES]
        if len(stages) - len(kept) != len(_IDLE_STAGES):  # a stage renamed or gone: say so, as apply() does
            raise SystemExit(f"the pipeline no longer has all of {', '.join(_IDLE_STAGES)}")
        return compose(kept, last)

    return composed


def _by(replacement: Callable[..., Any]) -> Callable[[Any], Any]:
    return lambda _original: replacement


# part -> (what it is, [(module, attribute path, original -> replacement)])
Patch = tuple[str, str, Callable[[Any], Any]]
PARTS: dict[str, tuple[str, list[Patch]]] = {
    "log": ("the request's log line", [("proxy.server.handlers", "log_request", _by(_nothing))]),
    "metrics": ("request and upstream-attempt metrics", [
        ("proxy.server.request_metrics", "RequestMetrics.request_started", _by(_nothing)),
        ("proxy.server.request_metrics", "RequestMetrics.request_done", _by(_nothing)),
        ("proxy.pipeline.retry", "MetricsObserver.finished", _by(_nothing)),
    ]),
    "accounting": ("per-key limits check, usage, cost and their metrics", [
        ("proxy.limits.service", "Limiter.plan", _by(_no_checks)),
        ("proxy.limits.service", "Limiter.finish", _by(_nothing)),
    ]),
    "headers": ("the x-switchyard-* response headers", [("proxy.server.handlers", "_result_headers", _by(_no_headers))]),
    "translator": ("the OpenAI stream's spec rewrite (relayed as it came)", [
        ("proxy.providers.openai.stream", "StreamTranslator.feed", _by(_relay_as_is)),
    ]),
    "tracker": ("the drain tracker (deadline, SIGTERM)", [
        ("proxy.server.drain", "Tracker.enter", _by(_nothing)),
        ("proxy.server.drain", "Tracker.leave", _by(_nothing)),
    ]),
    "stages": (f"{len(_IDLE_STAGES)} stages with nothing to do", [
        ("proxy.pipeline.build", "compose", _without_idle_stages),
    ]),
}


def apply(part: str) -> None:
    for module_name, path, replace in PARTS[part][1]:
        owner: Any = importlib.import_module(module_name)
        *outer, name = path.split(".")
        for attribute in outer:
            owner = getattr(owner, attribute)
        original = getattr(owner, name)  # AttributeError: the part moved, and this must follow it
        setattr(owner, name, replace(original))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--without", action="append", default=[], choices=sorted(PARTS), help="a part to leave out")
    ap.add_argument("--config", required=True)
    args = ap.parse_args()
    for part in args.without:
        apply(part)
    sys.argv = ["proxy", "serve", "--config", args.config]
    runpy.run_module("proxy", run_name="__main__")


if __name__ == "__main__":
    main()
