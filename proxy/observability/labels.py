"""Label values and buckets of the proxy's metrics: bounded, whatever clients send."""

from __future__ import annotations

OTHER = "other"
NONE = "none"

# Whole requests and upstream calls: a cached answer takes a few ms, a long generation minutes.
REQUEST_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    30.0,
    60.0,
    120.0,
)
# Time to first token: interesting between ~50 ms and a few seconds, so finer there.
TTFT_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    1.5,
    2.0,
    3.0,
    5.0,
    10.0,
    20.0,
    30.0,
    60.0,
    120.0,
)
# The proxy's own time: should be well under a millisecond; the alert fires at p99 > 5 ms.
OVERHEAD_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
)

_MAX_MODEL_LEN = 200  # longer "model ids" are not model ids
_MAX_ROUTES = 32
_MAX_CACHE_RESULTS = 16
_MAX_STATUSES = 128
_MAX_DURATION_S = (
    1e6  # anything outside [0, 1e6] is a bug (NaN, inf, negative): observed as 0
)


def _seconds(x: float) -> float:
    """Durations outside [0, 1e6] (negative from clock skew, NaN, inf) would poison histogram sums."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return 0.0
    return x if 0.0 <= x <= _MAX_DURATION_S else 0.0


class _Capped:
    """Maps raw values to label values: the first ``cap`` distinct ones are kept, later ones are "other"."""

    __slots__ = ("_cap", "_max_len", "_seen")

    def __init__(self, cap: int, max_len: int = _MAX_MODEL_LEN) -> None:
        self._seen: dict[str, str] = {}
        self._cap = cap
        self._max_len = max_len

    def __call__(self, value: object) -> str:
        label = self._seen.get(value)  # type: ignore[call-overload]
        if label is not None:
            return label
        if value is None or value == "":
            return NONE
        if not isinstance(value, str):
            value = str(value)
            label = self._seen.get(value)
            if label is not None:
                return label
        if len(self._seen) < self._cap and len(value) <= self._max_len:
            self._seen[value] = value
            return value
        return OTHER
