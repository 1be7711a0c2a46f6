"""The request path, readable top to bottom:

    auth → templating → knowledge → cache → load balancer → fallback → retry → timeout → connector
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.pipeline.auth import Authorize
from proxy.pipeline.balance import Balance
from proxy.pipeline.cache import CacheStage
from proxy.pipeline.dispatch import Dispatch
from proxy.pipeline.fallback import Fallback
from proxy.pipeline.knowledge import Knowledge
from proxy.pipeline.retry import Retry
from proxy.pipeline.stage import Next, compose
from proxy.pipeline.templating import Templating
from proxy.pipeline.timeout import Timeout

if TYPE_CHECKING:
    from proxy.runtime import Runtime


def build_pipeline(runtime: Runtime) -> Next:
    metrics = runtime.metrics
    return compose(
        [
            Authorize(),
            Templating(runtime.prompts),
            Knowledge(),
            CacheStage(runtime.cache, metrics),
            Balance(),
            Fallback(metrics),
            Retry(runtime.config.routing, metrics),
            Timeout(),
        ],
        Dispatch(runtime.connectors),
    )
