"""A stage is `async def __call__(self, call, next)`; the pipeline is a list of them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial
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
        # partial, not a wrapper coroutine: calling it returns the stage's own coroutine, so a
        # request pays one frame per stage instead of two.
        handler = partial(stage.__call__, next=handler)
    return handler
