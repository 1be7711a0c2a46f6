"""OpenAI's rate-limit headers, from one admission: for requests and for tokens, the most
constraining of the key's counters of that kind (the key's own or a model glob's)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from proxy.limits.rules import Check
from proxy.limits.store import Admission

_NAMES = {"requests_per_minute": "requests", "tokens_per_minute": "tokens"}


def duration(ms: float) -> str:
    """OpenAI's format: `20ms`, `1s`, `6m0s`, `1m30.5s`."""
    if ms < 1000:
        return f"{max(0, math.ceil(ms))}ms"
    seconds = math.ceil(ms / 10) / 100
    minutes, seconds = divmod(seconds, 60)
    text = f"{seconds:.2f}".rstrip("0").rstrip(".")
    return f"{int(minutes)}m{text}s" if minutes else f"{text}s"


def ratelimit_headers(checks: Sequence[Check], admission: Admission) -> dict[str, str]:
    tightest: dict[str, int] = {}
    for i, check in enumerate(checks):
        name = _NAMES.get(check.kind)
        if name is None:
            continue
        best = tightest.get(name)
        if best is None or admission.remaining[i] < admission.remaining[best]:
            tightest[name] = i
    headers: dict[str, str] = {}
    for name, i in tightest.items():
        headers[f"x-ratelimit-limit-{name}"] = str(int(checks[i].limit))
        headers[f"x-ratelimit-remaining-{name}"] = str(int(admission.remaining[i]))
        headers[f"x-ratelimit-reset-{name}"] = duration(admission.reset_ms[i])
    return headers
