"""A stage is `__call__(self, call, next) -> Awaitable[Result]`; the pipeline is a list of them.

A stage that only looks at the call before passing it on is a plain method returning
`next(call)`: it then adds no coroutine frame to the chain every I/O resumption walks through.
A stage that must act on the outcome (retry, fallback, timeout, cache) is `async def`, and
returns `next(call)` unawaited on the paths where it has nothing to do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Protocol

from proxy.pipeline.call import Call
from proxy.providers.base import Result

Next = Callable[[Call], Awaitable[Result]]


class Stage(Protocol):
    def __call__(self, call: Call, next: Next) -> Awaitable[Result]: ...


def compose(stages: Sequence[Stage], last: Next) -> Next:
    """Fold the stages into one callable, once at start-up, so a request pays only the calls."""
    handler = last
    for stage in reversed(stages):
        # partial, not a wrapper coroutine: calling it returns the stage's own coroutine, so a
        # request pays one frame per stage instead of two.
        handler = partial(stage.__call__, next=handler)
    return handler
