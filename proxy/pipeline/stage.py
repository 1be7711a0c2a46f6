"""A stage is `async def __call__(self, call, next)`; the pipeline is a list of them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from proxy.pipeline.call import Call
from proxy.providers.base import Result

Next = Callable[[Call], Awaitable[Result]]


class Stage(Protocol):
    async def __call__(self, call: Call, next: Next) -> Result: ...


def compose(stages: Sequence[Stage], last: Next) -> Next:
    """Fold the stages into one callable, once at start-up, so a request pays only the calls."""
    handler = last
    for stage in reversed(stages):
        handler = _bind(stage, handler)
    return handler


def _bind(stage: Stage, next: Next) -> Next:
    async def run(call: Call) -> Result:
        return await stage(call, next)

    return run
