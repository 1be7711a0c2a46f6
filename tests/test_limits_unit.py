"""The limits' config checks and window arithmetic, without sockets (README, "Limits and usage")."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from proxy.config import ConfigError, parse_config
from proxy.core.model import usage_of
from proxy.limits import memory_store
from proxy.limits.headers import duration
from proxy.limits.memory_store import MemoryStore
from proxy.limits.pricing import Pricing
from proxy.limits.rules import Rules
from proxy.limits.store import WINDOW_MS

BASE = """
providers: {emu: {type: openai, base_url: "http://127.0.0.1:9/v1"}}
auth: {keys: [{name: team-a, key: "sk-0123456789"}, {name: team-b, key: "sk-9876543210"}]}
"""


def test_config_defaults_and_refusals() -> None:
    config = parse_config(BASE + "cache: {backend: redis, url: 'redis://127.0.0.1:6379/3'}\n"
                                 "limits: {default: {requests_per_minute: 10}}")
    assert config.limits.backend == "redis" and config.limits.redis_url == "redis://127.0.0.1:6379/3"
    assert config.limits.on_redis_error == "fail_open"
    assert config.limits.slot_ttl_seconds == 630.0  # max_request_seconds + 30
    assert parse_config(BASE).limits.backend == "memory"
    with pytest.raises(ConfigError, match=r"limits\.keys\.nobody: no key named"):
        parse_config(BASE + "limits: {keys: {nobody: {requests_per_minute: 1}}}")
    with pytest.raises(ConfigError, match=r"limits\.backend: memory counts per process"):
        parse_config(BASE + "server: {workers: 2}\nlimits: {default: {requests_per_minute: 1}}")
    with pytest.raises(ConfigError, match=r"limits\.redis_url"):
        parse_config(BASE + "limits: {backend: redis}")
    with pytest.raises(ConfigError, match=r"limits\.keys\.team-a\.requests_per_minute: Expected `int` >= 1"):
        parse_config(BASE + "limits: {keys: {team-a: {requests_per_minute: 0}}}")
    with pytest.raises(ConfigError, match=r"limits\.on_redis_error"):
        parse_config(BASE + "limits: {on_redis_error: ignore}")


def test_a_keys_entry_overrides_the_default_field_by_field() -> None:
    config = parse_config(BASE + """
limits:
  default: {requests_per_minute: 10, tokens_per_minute: 1000, models: {"emu/big-*": {requests_per_minute: 2}}}
  keys:
    team-a: {requests_per_minute: 50, models: {"emu/big-*": {tokens_per_day: 99}}}
""")
    rules = Rules(config.limits, ["team-a", "team-b"])
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    a = {c.param: c.limit for c in rules.checks("team-a", ["emu/big-1"], now)}
    assert a == {"requests_per_minute": 50, "tokens_per_minute": 1000,
                 "models[emu/big-*].requests_per_minute": 2, "models[emu/big-*].tokens_per_day": 99}
    b = {c.param: c.limit for c in rules.checks("team-b", ["emu/small"], now)}
    assert b == {"requests_per_minute": 10, "tokens_per_minute": 1000}
    budget = next(c for c in rules.checks("team-a", ["emu/big-1"], now) if c.kind == "tokens_per_day")
    assert budget.counter.endswith(":2026-11-30") and budget.counter.startswith("switchyard:limits:{team-a}")


def test_the_sliding_window_weighs_the_previous_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    config = parse_config(BASE + "limits: {keys: {team-a: {requests_per_minute: 4}}}")
    checks = Rules(config.limits, ["team-a"]).checks("team-a", ["emu/m"])
    store = MemoryStore()
    clock = [1_000 * WINDOW_MS / 1000.0]  # seconds, at the start of a minute
    monkeypatch.setattr(memory_store.time, "time", lambda: clock[0])

    def admit() -> tuple[int, float, float]:
        result = asyncio.run(store.admit(checks, "slot", 1000))
        return result.denied, result.retry_after_ms, result.remaining[0]

    assert [admit()[0] for _ in range(4)] == [-1, -1, -1, -1]
    denied, wait, remaining = admit()
    # four in the current minute: the estimate drops to 3 only when the next minute is a quarter old
    assert denied == 0 and remaining == 0 and wait == pytest.approx(WINDOW_MS + WINDOW_MS / 4)
    clock[0] += 60 + 14  # next minute, 14 s in: 4 × (1 − 14/60) = 3.07 — still full
    assert admit()[0] == 0
    clock[0] += 2  # 16 s in: 4 × (1 − 16/60) = 2.93, room for one
    assert admit()[:1] == (-1,) and admit()[0] == 0
    clock[0] += 180  # minutes later the old buckets are gone, not kept forever
    assert admit()[0] == -1 and len(store.values) == 1


def test_pricing_and_durations() -> None:
    config = parse_config(BASE + """
pricing:
  "emu/gpt-4o-mini*": {input_per_1m: 0.15, output_per_1m: 0.6}
  "emu/*": {input_per_1m: 2.5, output_per_1m: 10}
""")
    pricing = Pricing(config.pricing)
    usage = usage_of(1_000_000, 2_000_000, reasoning=500_000)  # reasoning is inside completion
    assert pricing.cost("emu/gpt-4o-mini-2024", usage) == pytest.approx(0.15 + 1.2)
    assert pricing.cost("emu/other", usage) == pytest.approx(2.5 + 20)
    assert pricing.cost("elsewhere/x", usage) == 0.0
    assert [duration(ms) for ms in (0, 20.2, 1000, 59_999, 60_000, 90_500, 119_000)] == [
        "0ms", "21ms", "1s", "1m0s", "1m0s", "1m30.5s", "1m59s"]


def test_every_limits_and_pricing_key_is_in_the_readme() -> None:
    import msgspec

    from proxy.config import KeyLimits, LimitsConfig, Price

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("## Limits and usage"):readme.index("## Logs")]
    fields = {f.name for struct in (LimitsConfig, KeyLimits, Price) for f in msgspec.structs.fields(struct)}
    missing = sorted(name for name in fields if f"{name}:" not in section and f"`{name}`" not in section)
    assert not missing, missing


def test_key_labels_are_bounded_by_the_config_and_reasoning_is_counted() -> None:
    from prometheus_client import generate_latest

    from proxy.observability.metrics import Metrics

    metrics = Metrics(["emu"])
    metrics.add_keys(["team-a"])
    metrics.key_usage(key="team-a", prompt=10, completion=30, reasoning=20, cost=0.5)
    metrics.key_usage(key="someone-else", prompt=1, completion=1, reasoning=0, cost=0.0)
    metrics.key_request(key="team-a", status=429)
    metrics.key_request(key="team-a", status=999_999)
    assert metrics.registry is not None
    text = generate_latest(metrics.registry).decode()
    assert 'switchyard_key_tokens_total{key="team-a",type="reasoning"} 20.0' in text
    assert 'switchyard_key_tokens_total{key="other",type="prompt"} 1.0' in text
    assert 'switchyard_key_cost_total{key="team-a"} 0.5' in text
    assert 'switchyard_key_requests_total{key="team-a",status="other"} 1.0' in text
    assert "someone-else" not in text
