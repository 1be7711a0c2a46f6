"""Circuit breakers per provider model (or per provider): what the request path asks and tells
them, and the metrics of their states (README, "Circuit breakers").

Only failures that would fall back count: timeouts, connection and protocol failures, 429 and
5xx. A 4xx other than 408/429 is the request's fault, not the deployment's: it counts as an
answer, like a success.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from proxy.config import BreakerConfig
from proxy.core.errors import FailureKind, UpstreamError
from proxy.core.target import Target
from proxy.health.circuit import Admission, LocalCircuits, State, Transition, View
from proxy.observability.metrics import Metrics

if TYPE_CHECKING:
    from proxy.health.shared import SharedCircuits

_COUNTED_KINDS = frozenset({FailureKind.timeout, FailureKind.connection, FailureKind.protocol})
PROVIDER_WIDE = "*"  # the model label of a per-provider circuit


def counts_as_failure(err: UpstreamError) -> bool:
    return err.kind in _COUNTED_KINDS or err.status in (408, 429) or err.status >= 500


class Breakers:
    def __init__(self, policy: BreakerConfig, metrics: Metrics) -> None:
        self.policy = policy
        self.metrics = metrics
        self.store: LocalCircuits | SharedCircuits
        if policy.redis is not None:
            # Imported only when configured: it loads redis-py (proxy/cache/__init__.py).
            from proxy.health.shared import SharedCircuits

            self.store = SharedCircuits(policy)
        else:
            self.store = LocalCircuits(policy)
        self.per_provider = policy.scope == "provider"
        self._tasks: set[asyncio.Task[None]] = set()  # releases in flight, held until done

    def key(self, target: Target) -> str:
        return target.provider if self.per_provider else target.label

    def _labels(self, target: Target) -> tuple[str, str]:
        return target.provider, PROVIDER_WIDE if self.per_provider else target.model

    def _changed(self, target: Target, transition: Transition) -> None:
        if transition is not None:
            provider, model = self._labels(target)
            self.metrics.circuit_transition(provider=provider, model=model, to=transition[1].name)

    async def snapshot(self, targets: Iterable[Target]) -> dict[Target, View]:
        """Every target's view, in one store round trip."""
        by_key: dict[str, list[Target]] = {}
        for target in targets:
            by_key.setdefault(self.key(target), []).append(target)
        views = await self.store.snapshot(list(by_key), time.monotonic())
        out: dict[Target, View] = {}
        for key, members in by_key.items():
            view = views[key]
            provider, model = self._labels(members[0])
            self.metrics.circuit_state(provider=provider, model=model, state=int(view.state))
            for target in members:
                out[target] = view
        return out

    async def admit(self, target: Target, view: View) -> Admission:
        """May this attempt go? Closed: yes, with no store round trip; open: no; half-open (or a
        cooldown just over): only as one of the bounded probes."""
        if view.state is State.closed:
            return Admission(True, False)
        if view.state is State.open:
            return Admission(False, False, None, view.retry_in)
        admission = await self.store.admit(self.key(target), time.monotonic())
        self._changed(target, admission.transition)
        return admission

    async def finished(self, target: Target, err: UpstreamError | None, probe: bool) -> State | None:
        """Count the attempt's outcome; the state it moved the circuit to, if it moved it."""
        failed = err is not None and counts_as_failure(err)
        transition = await self.store.record(self.key(target), time.monotonic(), failed, probe)
        if transition is None:
            return None
        self._changed(target, transition)
        provider, model = self._labels(target)
        self.metrics.circuit_state(provider=provider, model=model, state=int(transition[1]))
        return transition[1]

    def released(self, target: Target) -> None:
        """A probe ended without an answer (the request was cancelled): give its permit back,
        in the background, since the cancelled request cannot wait for it."""
        task = asyncio.get_running_loop().create_task(self.store.release(self.key(target)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        await self.store.close()
