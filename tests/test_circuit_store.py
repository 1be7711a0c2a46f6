"""The circuit state machine, the same scenarios on the in-process store and on the Redis one
(real Redis at 127.0.0.1:6379; the test's own namespace, and only its keys are deleted)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator

import pytest

from proxy.config import BreakerConfig, BreakerRedis
from proxy.health.circuit import LocalCircuits, State
from proxy.health.shared import SharedCircuits
from tests.conftest import shared_redis

REDIS_URL = "redis://127.0.0.1:6379/0"


Store = LocalCircuits | SharedCircuits


@pytest.fixture(params=["local", "redis"])
def make(request: pytest.FixtureRequest) -> Iterator[Callable[[BreakerConfig], Store]]:
    namespace = f"sy-test-{uuid.uuid4().hex[:12]}"
    sync = shared_redis(db=0) if request.param == "redis" else None

    def build(policy: BreakerConfig) -> Store:
        if sync is None:
            return LocalCircuits(policy)
        policy.redis = BreakerRedis(url=REDIS_URL, namespace=namespace)
        return SharedCircuits(policy)

    yield build
    if sync is not None:
        keys = list(sync.scan_iter(f"{namespace}:*"))
        if keys:
            sync.delete(*keys)
        sync.close()


def run(step: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(step())


async def _close(store: Store) -> None:
    await store.close()


def test_opens_after_consecutive_failures_and_a_success_resets_the_count(make):
    store = make(BreakerConfig(consecutive_failures=3, failure_ratio=None, cooldown_seconds=5))

    async def scenario() -> None:
        now = time.monotonic()
        for failed in (True, True, False, True, True):  # the success in between resets
            assert await store.record("m", now, failed, False) is None
        assert await store.record("m", now, True, False) == (State.closed, State.open)
        views = await store.snapshot(["m", "other"], now)
        assert views["m"].state is State.open and 4 < views["m"].retry_in <= 5
        assert views["other"].state is State.closed
        admission = await store.admit("m", now)
        assert not admission.allowed
        await _close(store)

    run(scenario)


def test_failure_ratio_needs_the_minimum_of_requests(make):
    store = make(BreakerConfig(consecutive_failures=100, failure_ratio=0.5, min_requests=6, window_seconds=30))

    async def scenario() -> None:
        now = time.monotonic()
        for failed in (True, False, True, False, True):  # 3/5 failed, but only 5 requests
            assert await store.record("m", now, failed, False) is None
        assert await store.record("m", now, True, False) == (State.closed, State.open)  # 4/6
        await _close(store)

    run(scenario)


def test_half_open_lets_only_the_configured_probes_through_then_closes(make):
    store = make(BreakerConfig(consecutive_failures=1, failure_ratio=None, cooldown_seconds=0.2,
                               half_open_probes=2))

    async def scenario() -> None:
        await store.record("m", time.monotonic(), True, False)
        await asyncio.sleep(0.25)
        now = time.monotonic()
        assert (await store.snapshot(["m"], now))["m"].state is State.half_open  # cooldown over
        admissions = [await store.admit("m", now) for _ in range(5)]
        assert [a.allowed for a in admissions] == [True, True, False, False, False]
        assert all(a.probe for a in admissions[:2])
        assert admissions[0].transition == (State.open, State.half_open)
        await store.release("m")  # one probe's client left: its permit comes back
        assert (await store.admit("m", now)).allowed
        assert not (await store.admit("m", now)).allowed
        assert await store.record("m", now, False, True) == (State.half_open, State.closed)
        assert (await store.snapshot(["m"], now))["m"].state is State.closed
        await _close(store)

    run(scenario)


def test_a_failed_probe_reopens_for_a_new_cooldown(make):
    store = make(BreakerConfig(consecutive_failures=1, failure_ratio=None, cooldown_seconds=0.2))

    async def scenario() -> None:
        await store.record("m", time.monotonic(), True, False)
        await asyncio.sleep(0.25)
        assert (await store.admit("m", time.monotonic())).probe
        assert await store.record("m", time.monotonic(), True, True) == (State.half_open, State.open)
        assert not (await store.admit("m", time.monotonic())).allowed
        await _close(store)

    run(scenario)


def test_an_unreachable_redis_lets_everything_through_quickly():
    policy = BreakerConfig(consecutive_failures=1, redis=BreakerRedis(url="redis://127.0.0.1:1/0",
                                                                      timeout_seconds=0.2))
    store = SharedCircuits(policy)

    async def scenario() -> None:
        started = time.monotonic()
        assert (await store.snapshot(["m"], started))["m"].state is State.closed
        assert (await store.admit("m", started)).allowed
        assert await store.record("m", started, True, False) is None
        assert time.monotonic() - started < 0.5  # one failed connect, then paused
        await store.close()

    run(scenario)


def test_a_per_provider_breaker_covers_every_model_of_the_provider():
    from proxy.core.errors import timeout_error
    from proxy.core.target import Target
    from proxy.health.breakers import Breakers
    from proxy.observability.metrics import Metrics

    breakers = Breakers(BreakerConfig(scope="provider", consecutive_failures=2, failure_ratio=None),
                        Metrics(["emu", "other"]))

    async def scenario() -> None:
        for model in ("a", "b"):  # failures of two models add up on the provider's one circuit
            await breakers.finished(Target("emu", model), timeout_error(f"emu/{model}", 1.0), False)
        views = await breakers.snapshot([Target("emu", "c"), Target("other", "a")])
        assert views[Target("emu", "c")].state is State.open
        assert views[Target("other", "a")].state is State.closed
        await breakers.close()

    run(scenario)
    text = breakers.metrics.render()[0].decode()
    assert 'switchyard_circuit_state{model="*",provider="emu"} 2.0' in text
