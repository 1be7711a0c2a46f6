"""Counters in Redis, shared by every instance: each admission and each finish is one Lua
script, so a check and its update are one atomic step however many proxies race. Time is
Redis's own (`TIME`), so the instances' clocks do not matter for the windows."""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from proxy.limits.rules import Check
from proxy.limits.store import CONCURRENCY_RETRY_MS, WINDOW_MS, Admission

# KEYS: one counter per check. ARGV: slot, slot ttl ms, window ms, retry ms for a full
# concurrency limit, then (code, limit) per check. Returns the refusing index (0: none), its
# wait in ms, then (remaining, reset ms) per check, as strings (a Lua number reply would be
# truncated to an integer).
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local slot, slot_ttl, window = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local bucket = math.floor(now / window)
local elapsed = now - bucket * window
local denied, wait = 0, 0
local seen = {}
for i = 1, #KEYS do
  local code, limit = ARGV[3 + 2 * i], tonumber(ARGV[4 + 2 * i])
  local ok, w, v = true, 0, {}
  if code == 'r' or code == 't' then
    v.prev = tonumber(redis.call('GET', KEYS[i] .. ':' .. (bucket - 1)) or '0')
    v.curr = tonumber(redis.call('GET', KEYS[i] .. ':' .. bucket) or '0')
    v.est = v.prev * (1 - elapsed / window) + v.curr
    ok = v.est + 1 <= limit
    if not ok then
      local room = limit - 1
      if v.curr <= room then
        w = math.max(0, window * (1 - (room - v.curr) / v.prev) - elapsed)
      else
        w = (window - elapsed) + window * (1 - room / v.curr)
      end
    end
  elseif code == 'c' then
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
    v.count = redis.call('ZCARD', KEYS[i])
    ok = v.count + 1 <= limit
    if not ok then w = tonumber(ARGV[4]) end
  else
    v.spent = tonumber(redis.call('GET', KEYS[i]) or '0')
    ok = v.spent < limit
    if not ok then w = -1 end
  end
  if not ok and denied == 0 then denied, wait = i, w end
  seen[i] = v
end
-- What is left after this request: it counts only when every check admitted it.
local used = 0
if denied == 0 then used = 1 end
local out = {}
for i = 1, #KEYS do
  local code, limit, v = ARGV[3 + 2 * i], tonumber(ARGV[4 + 2 * i]), seen[i]
  local remaining, reset = 0, 0
  if code == 'r' or code == 't' then
    local add = 0
    if code == 'r' then add = used end
    remaining = math.max(0, math.floor(limit - v.est - add + 1e-9))
    if v.curr + add > 0 then reset = (window - elapsed) + window
    elseif v.prev > 0 then reset = window - elapsed end
    if add > 0 then
      local k = KEYS[i] .. ':' .. bucket
      redis.call('INCR', k)
      redis.call('PEXPIRE', k, 2 * window + 1000)
    end
  elseif code == 'c' then
    remaining = math.max(0, limit - v.count - used)
    if used > 0 then
      redis.call('ZADD', KEYS[i], now + slot_ttl, slot)
      redis.call('PEXPIRE', KEYS[i], slot_ttl + 1000)
    end
  else
    remaining = math.max(0, limit - v.spent)
  end
  out[#out + 1] = tostring(remaining)
  out[#out + 1] = tostring(reset)
end
table.insert(out, 1, tostring(wait))
table.insert(out, 1, tostring(denied))
return out
"""

# KEYS: one counter per check. ARGV: slot, window ms, tokens, cost, then (code, ttl ms) per
# check. Releases the slot and adds the usage; returns each budget's spend (else "0").
_FINISH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local slot, window = ARGV[1], tonumber(ARGV[2])
local tokens, cost = tonumber(ARGV[3]), ARGV[4]
local bucket = math.floor(now / window)
local out = {}
for i = 1, #KEYS do
  local code, ttl = ARGV[3 + 2 * i], tonumber(ARGV[4 + 2 * i])
  local value = '0'
  if code == 'c' then
    redis.call('ZREM', KEYS[i], slot)
  elseif code == 't' and tokens > 0 then
    local k = KEYS[i] .. ':' .. bucket
    redis.call('INCRBY', k, tokens)
    redis.call('PEXPIRE', k, 2 * window + 1000)
  elseif code == 'bt' then
    value = tostring(redis.call('INCRBY', KEYS[i], tokens))
    redis.call('PEXPIRE', KEYS[i], ttl)
  elseif code == 'bc' then
    value = redis.call('INCRBYFLOAT', KEYS[i], cost)
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
  out[#out + 1] = value
end
return out
"""


class RedisStore:
    def __init__(self, url: str, timeout: float) -> None:
        self.redis = Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                    health_check_interval=0,
                                    retry=Retry(NoBackoff(), 0))  # a retried script could count twice
        self._admit = self.redis.register_script(_ADMIT)
        self._finish = self.redis.register_script(_FINISH)

    async def admit(self, checks: Sequence[Check], slot: str, slot_ttl_ms: int) -> Admission:
        args: list[str | int | float] = [slot, slot_ttl_ms, WINDOW_MS, CONCURRENCY_RETRY_MS]
        for check in checks:
            args += [check.code, check.limit]
        reply = await self._admit(keys=[c.counter for c in checks], args=args)
        values = [float(v) for v in reply]
        pairs = values[2:]
        return Admission(int(values[0]) - 1, values[1], pairs[0::2], pairs[1::2])

    async def finish(self, checks: Sequence[Check], slot: str, tokens: int, cost: float) -> list[float]:
        args: list[str | int | float] = [slot, WINDOW_MS, tokens, repr(float(cost))]
        for check in checks:
            args += [check.code, check.ttl_ms]
        reply = await self._finish(keys=[c.counter for c in checks], args=args)
        return [float(v) for v in reply]

    async def close(self) -> None:
        await self.redis.aclose()
