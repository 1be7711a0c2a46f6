"""Scenario table: which load-generator runs each scenario needs, and with which bodies and timings.

Runs are keyed, so a run shared by two scenarios (e.g. uncached Switchyard throughput,
used by both ``throughput`` and ``cache``) is executed once.
"""

from __future__ import annotations

from dataclasses import dataclass

TARGETS = ("direct", "naive", "switchyard")
CONCURRENCY = 64
RATE = 300.0  # open-loop rate for non-stream latency: moderate, well under every target's capacity
STREAM_RATE = 200.0  # open-loop rate for stream TTFB (x22 SSE events each)
STREAMS = 1000
STREAM_CHUNKS = 20  # mock default for "bench-model"
# Mock streams 50 chunks 50 ms apart (see mock_upstream): 1,000 streams then carry ~21k SSE events/s,
# which the naive proxy sustains on 2 shared cores. At 20 ms apart (~52k events/s) even the naive proxy
# saturates and the scenario measures CPU, which stream_throughput already does, not holding streams open.
SLOW_CHUNKS, SLOW_DELAY_MS = 50, 50
SLOW_MODEL = f"stream-{SLOW_CHUNKS}x{SLOW_DELAY_MS}"


@dataclass(frozen=True)
class Profile:
    rounds: int  # every run is repeated this often, interleaved; the report takes medians
    warmup: float
    closed: float  # closed-loop window, seconds
    open: float  # open-loop window, seconds
    soak_warmup: float  # 1,000 streams: time to connect them all and reach steady state
    soak: float


PROFILES = {
    # Short interleaved rounds rather than one long run each: on a shared box the noise comes in
    # bursts of seconds, and adjacent direct/naive/switchyard runs see the same conditions.
    "default": Profile(rounds=3, warmup=1.0, closed=3.5, open=5.0, soak_warmup=3.0, soak=10.0),
    "quick": Profile(rounds=1, warmup=0.5, closed=2.0, open=3.0, soak_warmup=1.5, soak=3.0),
}


@dataclass(frozen=True)
class Run:
    target: str  # direct | naive | switchyard
    mode: str  # closed | open
    body: str  # key into body(): plain | stream | cache | fallback | slow
    concurrency: int = CONCURRENCY
    rate: float = RATE
    soak: bool = False  # soak timings, first round only (it is about memory, not speed)

    @property
    def key(self) -> str:
        load = f"c{self.concurrency}" if self.mode == "closed" else f"r{self.rate:g}"
        return f"{self.target}:{self.mode}:{self.body}:{load}"

    @property
    def stream(self) -> bool:
        return self.body in ("stream", "slow")


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    runs: tuple[Run, ...]


def body(variant: str, target: str) -> dict:
    """Request body; direct-to-mock gets the model name a proxy would forward upstream."""
    prefix = "" if target == "direct" else "mock/"
    base: dict = {"model": f"{prefix}bench-model", "prompt": "hello", "max_tokens": 16}
    if variant in ("stream", "slow"):
        # include_usage on every target so each stream has the same events whether or not the proxy adds it.
        base.update(stream=True, stream_options={"include_usage": True})
    if variant == "slow":
        base["model"] = f"{prefix}{SLOW_MODEL}"
    elif variant == "cache":
        base["cache"] = {"type": "exact_match", "ttl": 600}
    elif variant == "fallback":
        base.update(model="dead/m", fallbacks=[{"model": "mock/bench-model"}])
    return base


def _each(
    mode: str, variant: str, concurrency: int = CONCURRENCY, rate: float = RATE, soak: bool = False
) -> tuple[Run, ...]:
    return tuple(Run(t, mode, variant, concurrency, rate, soak) for t in TARGETS)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("throughput", f"Non-stream throughput, closed loop, {CONCURRENCY} connections", _each("closed", "plain")),
    Scenario(
        "stream_throughput",
        f"Stream throughput ({STREAM_CHUNKS} chunks), closed loop, {CONCURRENCY} connections",
        _each("closed", "stream"),
    ),
    Scenario("latency", f"Added latency, open loop {RATE:g} req/s", _each("open", "plain")),
    Scenario(
        "stream_ttfb", f"Streaming TTFB, open loop {STREAM_RATE:g} streams/s", _each("open", "stream", rate=STREAM_RATE)
    ),
    Scenario(
        "cache",
        "Cache-hit vs uncached throughput (Switchyard)",
        (Run("switchyard", "closed", "plain"), Run("switchyard", "closed", "cache")),
    ),
    Scenario(
        "fallback",
        "Fallback path: primary answers 503 at once, fallback serves (Switchyard)",
        (
            Run("switchyard", "closed", "plain"),
            Run("switchyard", "closed", "fallback"),
            Run("direct", "open", "plain"),
            Run("switchyard", "open", "fallback"),
        ),
    ),
    Scenario(
        "streams_1000",
        f"{STREAMS:,} concurrent slow streams ({SLOW_CHUNKS} chunks x {SLOW_DELAY_MS} ms)",
        _each("closed", "slow", concurrency=STREAMS, soak=True),
    ),
)


def select(only: list[str] | None) -> tuple[Scenario, ...]:
    if not only:
        return SCENARIOS
    names = {s.name for s in SCENARIOS}
    unknown = [n for n in only if n not in names]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {unknown}; choose from {sorted(names)}")
    return tuple(s for s in SCENARIOS if s.name in only)


def runs_for(scenarios: tuple[Scenario, ...]) -> list[Run]:
    """Unique runs in scenario order."""
    seen: dict[str, Run] = {}
    for sc in scenarios:
        for run in sc.runs:
            seen.setdefault(run.key, run)
    return list(seen.values())
