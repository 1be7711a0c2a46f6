"""Per-request updates of prometheus_client children without its public methods' per-call work.

`Counter.inc` checks that labels were applied and that the amount is not negative before
touching the value; `Histogram.observe` does the same and then walks every bucket bound in
Python; `Gauge.set` checks the labels too. A request makes about twenty such updates, and they
cost more than the rest of its metrics. The children here are always labelled and the amounts
are ours (durations, token counts, in-flight counts), so these callables go to the value
objects directly: the same values, in the same order, in single-process and in multiprocess
mode (tests/test_metrics_unit.py compares the exposition with the public methods').

In single-process mode the value is a float behind a mutex, there for threads. Every update a
request makes runs on the worker's event loop thread, as does the exposition (`GET /metrics`),
so these updates add to the float without taking the mutex: a lock round-trip is most of what
an update costs. In multiprocess mode values live in a shared file and go through `inc`/`set`,
which write it.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from typing import Any

from prometheus_client.values import MutexValue

Update = Callable[[float], None]


def _add_to(value: Any) -> Update:
    if type(value) is not MutexValue:  # multiprocess: the shared file must be written
        return value.inc  # type: ignore[no-any-return]

    def add(amount: float) -> None:
        value._value += amount

    return add


def adder(counter: Any) -> Update:
    """`counter.inc(amount)` for a labelled Counter child (amount ≥ 0)."""
    return _add_to(counter._value)


def setter(gauge: Any) -> Update:
    """`gauge.set(value)` for a Gauge (or labelled Gauge child)."""
    value = gauge._value
    if type(value) is not MutexValue:
        return value.set  # type: ignore[no-any-return]

    def set_to(amount: float) -> None:
        value._value = amount

    return set_to


def observer(histogram: Any) -> Update:
    """`histogram.observe(amount)` for a labelled Histogram child, its bucket found by bisection
    (the first bound ≥ amount, as observe's walk finds it; the last bound is +Inf)."""
    add_sum = _add_to(histogram._sum)
    bounds = list(histogram._upper_bounds)
    buckets = [_add_to(bucket) for bucket in histogram._buckets]

    def observe(amount: float) -> None:
        add_sum(amount)
        index = bisect_left(bounds, amount)
        if index < len(buckets):  # NaN matches no bound, as in observe
            buckets[index](1)

    return observe
