"""Circuits shared by every instance through Redis (`breakers.redis`): one breaker across them.

The state machine of `proxy.health.circuit` runs in Lua, so each step is atomic across
instances and reads one clock (Redis's own `TIME`). Keys are `<namespace>:breaker:<circuit>`
hashes that expire when unused. A Redis outage or slow answer never fails nor holds a request:
circuits then read as closed and admit everything, and Redis is left alone for a few seconds.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from redis.asyncio import Redis

from proxy.config import BreakerConfig
from proxy.health.circuit import CLOSED, Admission, State, Transition, View

_log = structlog.get_logger("switchyard.breakers")
_PAUSE_SECONDS = 5.0

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# -> {state, retry_in_ms} per key; an open circuit whose cooldown is over reads as half-open.
_SNAPSHOT = _NOW + """
local out = {}
for _, k in ipairs(KEYS) do
  local h = redis.call('HMGET', k, 's', 'u')
  local s = tonumber(h[1]) or 0
  local r = 0
  if s == 2 then
    local u = tonumber(h[2]) or 0
    if now >= u then s = 1 else r = u - now end
  end
  out[#out + 1] = s
  out[#out + 1] = r
end
return out
"""

# ARGV: probes, cooldown_ms, ttl_s -> {allowed, probe, before, after, retry_in_ms}
_ADMIT = _NOW + """
local k = KEYS[1]
local h = redis.call('HMGET', k, 's', 'u', 'p', 'ps')
local s = tonumber(h[1]) or 0
if s == 0 then return {1, 0, 0, 0, 0} end
local before = s
local p = tonumber(h[3]) or 0
local ps = tonumber(h[4]) or 0
if s == 2 then
  local u = tonumber(h[2]) or 0
  if now < u then return {0, 0, 2, 2, u - now} end
  s = 1
  p = 0
  ps = now
end
if p > 0 and now - ps > tonumber(ARGV[2]) then
  p = 0
  ps = now
end
local allowed = 0
if p < tonumber(ARGV[1]) then
  p = p + 1
  allowed = 1
end
redis.call('HSET', k, 's', s, 'p', p, 'ps', ps)
redis.call('EXPIRE', k, tonumber(ARGV[3]))
return {allowed, allowed, before, s, 0}
"""

# ARGV: failed, probe, consecutive, ratio (-1: none), window_ms, min_requests, cooldown_ms, ttl_s
# -> {before, after}
_RECORD = _NOW + """
local k = KEYS[1]
local failed = ARGV[1] == '1'
local h = redis.call('HMGET', k, 's', 'c', 'ws', 'wt', 'wf', 'p')
local s = tonumber(h[1]) or 0
local cooldown = tonumber(ARGV[7])
if s == 2 then return {2, 2} end
if s == 1 then
  local p = tonumber(h[6]) or 0
  if ARGV[2] == '1' and p > 0 then p = p - 1 end
  if failed then
    redis.call('HSET', k, 's', 2, 'u', now + cooldown, 'p', 0)
  else
    redis.call('HSET', k, 's', 0, 'c', 0, 'p', 0, 'ws', now, 'wt', 0, 'wf', 0)
  end
  redis.call('EXPIRE', k, tonumber(ARGV[8]))
  if failed then return {1, 2} end
  return {1, 0}
end
local c = tonumber(h[2]) or 0
local ws = tonumber(h[3]) or 0
local wt = tonumber(h[4]) or 0
local wf = tonumber(h[5]) or 0
if now - ws >= tonumber(ARGV[5]) then
  ws = now
  wt = 0
  wf = 0
end
wt = wt + 1
if failed then
  c = c + 1
  wf = wf + 1
else
  c = 0
end
local ratio = tonumber(ARGV[4])
local after = 0
if failed and (c >= tonumber(ARGV[3]) or (ratio >= 0 and wt >= tonumber(ARGV[6]) and wf >= ratio * wt)) then
  after = 2
  redis.call('HSET', k, 's', 2, 'u', now + cooldown, 'p', 0)
end
redis.call('HSET', k, 'c', c, 'ws', ws, 'wt', wt, 'wf', wf)
redis.call('EXPIRE', k, tonumber(ARGV[8]))
return {0, after}
"""

_RELEASE = """
local k = KEYS[1]
local h = redis.call('HMGET', k, 's', 'p')
if tonumber(h[1]) == 1 and (tonumber(h[2]) or 0) > 0 then redis.call('HINCRBY', k, 'p', -1) end
return {0}
"""


def _transition(before: int, after: int) -> Transition:
    return None if before == after else (State(before), State(after))


class SharedCircuits:
    def __init__(self, policy: BreakerConfig) -> None:
        assert policy.redis is not None
        self.policy = policy
        settings = policy.redis
        self.prefix = f"{settings.namespace}:breaker:"
        self.client: Redis = Redis.from_url(settings.url, socket_timeout=settings.timeout_seconds,
                                            socket_connect_timeout=settings.timeout_seconds)
        self._snapshot = self.client.register_script(_SNAPSHOT)
        self._admit = self.client.register_script(_ADMIT)
        self._record = self.client.register_script(_RECORD)
        self._release = self.client.register_script(_RELEASE)
        cooldown_ms = int(policy.cooldown_seconds * 1000)
        ttl = int(max(policy.cooldown_seconds, policy.window_seconds) * 2 + 60)
        self._admit_args = [policy.half_open_probes, cooldown_ms, ttl]
        ratio = -1.0 if policy.failure_ratio is None else policy.failure_ratio
        self._record_args = [policy.consecutive_failures, repr(ratio), int(policy.window_seconds * 1000),
                             policy.min_requests, cooldown_ms, ttl]
        self.paused_until = 0.0

    def _failed(self, err: BaseException) -> None:
        if time.monotonic() >= self.paused_until:  # once per outage, not once per request
            _log.warning("breaker store unavailable; circuits read as closed until it answers",
                         error=f"{type(err).__name__}: {err}"[:300], retry_in_seconds=_PAUSE_SECONDS)
        self.paused_until = time.monotonic() + _PAUSE_SECONDS

    async def _run(self, script: Any, keys: list[str], args: list[Any]) -> list[int] | None:
        if time.monotonic() < self.paused_until:
            return None
        try:
            return [int(x) for x in await script(keys=keys, args=args)]
        except Exception as err:  # noqa: BLE001 — any store failure lets requests through, by design
            self._failed(err)
            return None

    async def snapshot(self, keys: list[str], now: float) -> dict[str, View]:
        out = await self._run(self._snapshot, [self.prefix + key for key in keys], [])
        if out is None:
            return dict.fromkeys(keys, CLOSED)
        return {key: View(State(out[2 * i]), out[2 * i + 1] / 1000) for i, key in enumerate(keys)}

    async def admit(self, key: str, now: float) -> Admission:
        out = await self._run(self._admit, [self.prefix + key], self._admit_args)
        if out is None:
            return Admission(True, False)
        allowed, probe, before, after, retry_in_ms = out
        return Admission(bool(allowed), bool(probe), _transition(before, after), retry_in_ms / 1000)

    async def record(self, key: str, now: float, failed: bool, probe: bool) -> Transition:
        args = ["1" if failed else "0", "1" if probe else "0", *self._record_args]
        out = await self._run(self._record, [self.prefix + key], args)
        return None if out is None else _transition(out[0], out[1])

    async def release(self, key: str) -> None:
        await self._run(self._release, [self.prefix + key], [])

    async def close(self) -> None:
        await self.client.aclose()
