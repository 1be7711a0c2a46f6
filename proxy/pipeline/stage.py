"""A stage is `__call__(self, call, next) -> Awaitable[Outcome]`; the pipeline is a list of them.

A stage that only looks at the call before passing it on is a plain method returning
`next(call)`: it then adds no coroutine frame to the chain every I/O resumption walks through.
A stage that must act on the outcome (retry, fallback, timeout, cache) is `async def`, and
returns `next(call)` unawaited on the paths where it has nothing to do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, Protocol

from proxy.core.model import Result
from proxy.core.stream import UpstreamStream
from proxy.pipeline.call import Call

# A whole canonical answer, or a stream whose first content is in hand.
Outcome = Result | UpstreamStream[Any]
Next = Callable[[Call], Awaitable[Outcome]]


class Stage(Protocol):
    def __call__(self, call: Call, next: Next) -> Awaitable[Outcome]: ...


def compose(stages: Sequence[Stage], last: Next) -> Next:
    """Fold the stages into one callable, once at start-up, so a request pays only the calls."""
    handler = last
    for stage in reversed(stages):
        # partial, not a wrapper coroutine: calling it returns the stage's own coroutine, so a
        # request pays one frame per stage instead of two.
        handler = partial(stage.__call__, next=handler)
    return handler
