"""The request path, readable top to bottom:

    auth → limits → templating → knowledge → support check → cache → load balancer → fallback → retry
    → timeout → connector
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.pipeline.auth import AuthorizeStage
from proxy.pipeline.balance import BalanceStage
from proxy.pipeline.cache import CacheStage
from proxy.pipeline.dispatch import DispatchStage
from proxy.pipeline.fallback import FallbackStage
from proxy.pipeline.knowledge import KnowledgeStage
from proxy.pipeline.limits import LimitStage
from proxy.pipeline.retry import (
    AttemptObserver,
    BreakerObserver,
    LoadObserver,
    MetricsObserver,
    RetryStage,
)
from proxy.pipeline.stage import Next, compose
from proxy.pipeline.support import SupportStage
from proxy.pipeline.templating import TemplatingStage
from proxy.pipeline.timeout import TimeoutStage

if TYPE_CHECKING:
    from proxy.runtime import Runtime


def build_pipeline(runtime: Runtime) -> Next:
    metrics = runtime.metrics
    balance = BalanceStage(runtime.load, runtime.breakers)
    return compose(
        [
            AuthorizeStage(),
            LimitStage(runtime.limiter),
            TemplatingStage(runtime.prompts, runtime.config.server.max_prompt_chars),
            KnowledgeStage(runtime.knowledge),
            SupportStage(runtime.connectors),
            CacheStage(runtime.cache, metrics),
            balance,
            FallbackStage(metrics, runtime.breakers, balance),
            RetryStage(runtime.config.routing, metrics, observers=attempt_observers(runtime)),
            TimeoutStage(),
        ],
        DispatchStage(runtime.connectors),
    )


def attempt_observers(runtime: Runtime) -> list[AttemptObserver]:
    observers: list[AttemptObserver] = [MetricsObserver(runtime.metrics), LoadObserver(runtime.load)]
    if runtime.breakers is not None:
        observers.append(BreakerObserver(runtime.breakers))
    return observers
