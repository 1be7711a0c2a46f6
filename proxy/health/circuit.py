"""One circuit breaker's state machine, and the in-process store of many (README, "Circuit breakers").

closed ──(N consecutive failures, or failure ratio ≥ r over the window with ≥ min requests)──▶ open
open ──(cooldown over; the first request to look)──▶ half-open
half-open: at most `half_open_probes` attempts at a time are let through, every other request
skips the candidate as if open; a probe's success closes, its failure reopens for a new cooldown.

The Redis store (`proxy.health.shared`) runs the same machine in Lua; tests run one scenario
against both.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

from proxy.config import BreakerConfig


class State(IntEnum):
    # The gauge's value (README, "Metrics"): higher is worse, so `max` across workers is right.
    closed = 0
    half_open = 1
    open = 2


class View(NamedTuple):
    """What a request needs to know before drawing: the state, and for an open circuit how long
    until it lets a probe through. An open circuit whose cooldown is over reads as half-open."""

    state: State
    retry_in: float = 0.0


Transition = tuple[State, State] | None


class Admission(NamedTuple):
    allowed: bool
    probe: bool  # a half-open probe: its outcome decides the circuit
    transition: Transition = None
    retry_in: float = 0.0


CLOSED = View(State.closed)


@dataclass(slots=True)
class Circuit:
    state: State = State.closed
    until: float = 0.0  # open: when the cooldown ends
    consecutive: int = 0
    window_start: float = 0.0
    window_total: int = 0
    window_failed: int = 0
    probes: int = 0  # half-open: probes in flight
    probing_since: float = 0.0

    def view(self, now: float) -> View:
        if self.state is State.open:
            return View(State.half_open) if now >= self.until else View(State.open, self.until - now)
        return View(self.state)

    def admit(self, now: float, policy: BreakerConfig) -> Admission:
        before = self.state
        if self.state is State.closed:
            return Admission(True, False)
        if self.state is State.open:
            if now < self.until:
                return Admission(False, False, None, self.until - now)
            self.state, self.probes, self.probing_since = State.half_open, 0, now
        if self.probes and now - self.probing_since > policy.cooldown_seconds:
            # Probes that never reported (a crashed instance) must not hold the circuit half-open.
            self.probes, self.probing_since = 0, now
        changed = (before, self.state) if before is not self.state else None
        if self.probes >= policy.half_open_probes:
            return Admission(False, False, changed)
        self.probes += 1
        return Admission(True, True, changed)

    def record(self, now: float, failed: bool, probe: bool, policy: BreakerConfig) -> Transition:
        before = self.state
        if self.state is State.open:
            return None  # a late answer to a request let through before it opened
        if self.state is State.half_open:
            if probe and self.probes:
                self.probes -= 1
            if failed:
                self._open(now, policy)
            else:
                self._close(now)
            return before, self.state
        if now - self.window_start >= policy.window_seconds:
            self.window_start, self.window_total, self.window_failed = now, 0, 0
        self.window_total += 1
        if not failed:
            self.consecutive = 0
            return None
        self.consecutive += 1
        self.window_failed += 1
        ratio = policy.failure_ratio
        if self.consecutive >= policy.consecutive_failures or (
            ratio is not None and self.window_total >= policy.min_requests
            and self.window_failed >= ratio * self.window_total
        ):
            self._open(now, policy)
            return before, self.state
        return None

    def release(self) -> None:
        """A probe ended without an answer (the client left): its permit goes back."""
        if self.state is State.half_open and self.probes:
            self.probes -= 1

    def _open(self, now: float, policy: BreakerConfig) -> None:
        self.state, self.until, self.probes = State.open, now + policy.cooldown_seconds, 0

    def _close(self, now: float) -> None:
        self.state, self.consecutive, self.probes = State.closed, 0, 0
        self.window_start, self.window_total, self.window_failed = now, 0, 0


_MAX_CIRCUITS = 10_000  # bounded: a model name can come from a client


class LocalCircuits:
    """Circuits of this process only (no `breakers.redis`)."""

    def __init__(self, policy: BreakerConfig) -> None:
        self.policy = policy
        self.circuits: dict[str, Circuit] = {}

    def _get(self, key: str) -> Circuit | None:
        circuit = self.circuits.get(key)
        if circuit is None and len(self.circuits) < _MAX_CIRCUITS:
            circuit = self.circuits[key] = Circuit()
        return circuit

    async def snapshot(self, keys: list[str], now: float) -> dict[str, View]:
        views: dict[str, View] = {}
        for key in keys:
            circuit = self.circuits.get(key)
            views[key] = CLOSED if circuit is None else circuit.view(now)
        return views

    async def admit(self, key: str, now: float) -> Admission:
        circuit = self._get(key)
        return Admission(True, False) if circuit is None else circuit.admit(now, self.policy)

    async def record(self, key: str, now: float, failed: bool, probe: bool) -> Transition:
        circuit = self._get(key)  # successes count too: the failure ratio is over all requests
        return None if circuit is None else circuit.record(now, failed, probe, self.policy)

    async def release(self, key: str) -> None:
        circuit = self.circuits.get(key)
        if circuit is not None:
            circuit.release()

    async def close(self) -> None:
        return None
