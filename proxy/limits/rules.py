"""Which counters a request is checked against: the key's limits (its own entry over the
`default`, field by field) and those of every model glob matching a model the request may reach.

Each limit is its own counter, named by the deployment's namespace, the key, the scope (`*` for
the whole key, else the model glob) and the limit kind, so requests and tokens never share one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fnmatch import translate

from proxy.config import KeyLimits, LimitsConfig, LimitSet

# Every limit kind, as the config, the error's `param` and the metrics name it.
WINDOWED = ("requests_per_minute", "tokens_per_minute")
BUDGETS = ("tokens_per_day", "tokens_per_month", "cost_per_day", "cost_per_month")
KINDS = (*WINDOWED, "concurrent_requests", *BUDGETS)
# The code each store's script knows a counter by.
CODE = {"requests_per_minute": "r", "tokens_per_minute": "t", "concurrent_requests": "c",
        "tokens_per_day": "bt", "tokens_per_month": "bt", "cost_per_day": "bc", "cost_per_month": "bc"}
KEY_WIDE = "*"


@dataclass(frozen=True, slots=True)
class Check:
    kind: str  # one of KINDS
    scope: str  # KEY_WIDE or the model glob
    counter: str  # the store's key (a budget's includes its period)
    limit: float
    ttl_ms: int = 0  # budgets: until a while after the period ends

    @property
    def code(self) -> str:
        return CODE[self.kind]

    @property
    def param(self) -> str:
        return self.kind if self.scope == KEY_WIDE else f"models[{self.scope}].{self.kind}"


def _merge(base: LimitSet | None, own: LimitSet | None) -> LimitSet:
    merged = {}
    for source in (base, own):
        if source is not None:
            merged.update({k: getattr(source, k) for k in KINDS if getattr(source, k) is not None})
    return LimitSet(**merged)


def _period(kind: str, now: datetime) -> tuple[str, datetime]:
    """A budget's calendar period (UTC) and when it ends."""
    if kind.endswith("_day"):
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return start.strftime("%Y-%m-%d"), start + timedelta(days=1)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=32)).replace(day=1)
    return start.strftime("%Y-%m"), end


def period_end(kind: str, now: datetime | None = None) -> datetime:
    return _period(kind, now or datetime.now(UTC))[1]


@dataclass(frozen=True, slots=True)
class Scope:
    name: str  # KEY_WIDE or a glob
    pattern: re.Pattern[str] | None
    limits: LimitSet


class Rules:
    def __init__(self, config: LimitsConfig, key_names: Iterable[str]) -> None:
        self.prefix = f"{config.namespace}:limits"
        self.scopes: dict[str, list[Scope]] = {}
        default = config.default
        for name in key_names:
            own: KeyLimits | None = config.keys.get(name)
            if default is None and own is None:
                continue
            scopes = [Scope(KEY_WIDE, None, _merge(default, own))]
            globs = {**(default.models if default else {}), **(own.models if own else {})}
            for glob in globs:
                limits = _merge(default.models.get(glob) if default else None,
                                own.models.get(glob) if own else None)
                scopes.append(Scope(glob, re.compile(translate(glob)), limits))
            scopes = [s for s in scopes if any(getattr(s.limits, k) is not None for k in KINDS)]
            if scopes:
                self.scopes[name] = scopes

    def limited(self, key: str) -> bool:
        return key in self.scopes

    def checks(self, key: str, models: Iterable[str], now: datetime | None = None) -> list[Check]:
        """The counters of `key` for a request that may reach `models` (provider/model labels)."""
        scopes = self.scopes.get(key)
        if not scopes:
            return []
        now = now or datetime.now(UTC)
        models = list(models)
        # The key name is wrapped in {} so that one key's counters share a Redis Cluster slot.
        base = f"{self.prefix}:{{{key}}}"
        out: list[Check] = []
        for scope in scopes:
            if scope.pattern is not None and not any(scope.pattern.match(m) for m in models):
                continue
            for kind in KINDS:
                limit = getattr(scope.limits, kind)
                if limit is None:
                    continue
                counter = f"{base}:{scope.name}:{kind}"
                ttl_ms = 0
                if kind in BUDGETS:
                    period, end = _period(kind, now)
                    counter = f"{counter}:{period}"
                    ttl_ms = int((end - now).total_seconds() * 1000) + 86_400_000  # kept a day past
                out.append(Check(kind, scope.name, counter, float(limit), ttl_ms))
        return out

