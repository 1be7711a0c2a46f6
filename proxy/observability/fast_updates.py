"""Per-request updates of prometheus_client children without its public methods' per-call work.

`Counter.inc` checks that labels were applied and that the amount is not negative before
touching the value; `Histogram.observe` does the same and then walks every bucket bound in
Python. A request makes about a dozen such updates, and they cost more than the rest of its
metrics. The children here are always labelled and the amounts are ours (durations and token
counts), so these callables go to the value objects directly: the same values, in the same
order, in single-process and in multiprocess mode (tests/test_metrics_unit.py compares the
exposition with the public methods').
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from typing import Any

Update = Callable[[float], None]


def adder(counter: Any) -> Update:
    """`counter.inc(amount)` for a labelled Counter child (amount ≥ 0)."""
    return counter._value.inc  # type: ignore[no-any-return]


def observer(histogram: Any) -> Update:
    """`histogram.observe(amount)` for a labelled Histogram child, its bucket found by bisection
    (the first bound ≥ amount, as observe's walk finds it; the last bound is +Inf)."""
    add_sum = histogram._sum.inc
    bounds = list(histogram._upper_bounds)
    buckets = histogram._buckets

    def observe(amount: float) -> None:
        add_sum(amount)
        index = bisect_left(bounds, amount)
        if index < len(buckets):  # NaN matches no bound, as in observe
            buckets[index].inc(1)

    return observe
