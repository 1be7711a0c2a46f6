"""Scenario table: targets, upstream paths, and which load-generator runs each scenario needs.

Runs are keyed, so a run shared by two scenarios (e.g. uncached Switchyard throughput,
used by both ``throughput`` and ``cache``) is executed once.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    name: str
    kind: str  # mock | naive | switchyard
    processes: int = 1
    label: str = ""


TARGETS: tuple[Target, ...] = (
    Target("direct", "mock", label="direct"),
    Target("naive", "naive", 1, "naive"),
    Target("switchyard", "switchyard", 1, "switchyard"),
    Target("naive2", "naive", 2, "naive ×2"),
    Target("switchyard2", "switchyard", 2, "switchyard ×2"),
)
TARGET = {t.name: t for t in TARGETS}
ONE = ("direct", "naive", "switchyard")  # scenarios where a second process adds nothing
# (switchyard target, its naive reference): every ratio in the report is one of these pairs.
PAIRS = (("switchyard", "naive"), ("switchyard2", "naive2"))


@dataclass(frozen=True)
class ProviderPath:
    """How Switchyard reaches the mock for one upstream wire format.

    A translated provider (``anthropic``: Switchyard turns the client's completions request
    into a Messages request and the answer back) has no naive equivalent, since the naive
    proxy cannot translate, so the report compares it with the ``openai`` path's Switchyard
    figures from the same run. Another format: its answer under its path in
    ``mock_formats.FORMATS``, a ProviderPath here, and runs with ``path=<name>``.
    """

    name: str
    provider: str  # provider name in Switchyard's config; the request's model prefix
    config: str  # the provider's YAML flow mapping; {mock} is the mock's base URL


PATHS: dict[str, ProviderPath] = {
    "openai": ProviderPath("openai", "mock", '{{type: openai, base_url: "{mock}/v1", api_key: "x"}}'),
    # The fallback scenario's primary: the mock answers 503 at once under /fail.
    "dead": ProviderPath("dead", "dead", '{{type: openai, base_url: "{mock}/fail/v1", api_key: "x"}}'),
    # The connector appends /v1/messages itself, so its base_url is the bare origin.
    "anthropic": ProviderPath("anthropic", "amock", '{{type: anthropic, base_url: "{mock}", api_key: "x"}}'),
}
TRANSLATED = ("plain", "stream", "stream_each")  # bodies the translated scenario runs on both paths

CONCURRENCY = 64
RATE = 10.0  # open loop: the added latency at a light load, where queueing does not hide it
STREAMS = 1000
STREAM_EVENTS = 20  # the mock's default content events per stream
# 1,000 streams at once: 50 events 50 ms apart, so every stream stays open ~2.5 s and all of
# them are open together (~20k events/s in total, which a proxy on one core sustains).
SLOW_EVENTS, SLOW_DELAY_MS = 50, 50
SLOW_MODEL = f"stream-{SLOW_EVENTS}x{SLOW_DELAY_MS}"


@dataclass(frozen=True)
class Profile:
    rounds: int  # every run is repeated this often, interleaved; the report takes medians
    warmup: float
    closed: float  # closed-loop window, seconds
    open: float  # open-loop window, seconds (at RATE: RATE x open samples)
    bursts: int  # burst runs: bursts made, only the last is recorded


PROFILES = {
    # Short interleaved rounds rather than one long run each: on a shared box the noise comes in
    # bursts of seconds, and adjacent runs of each target see the same conditions.
    "default": Profile(rounds=3, warmup=1.0, closed=3.0, open=12.0, bursts=2),
    "quick": Profile(rounds=1, warmup=0.5, closed=2.0, open=6.0, bursts=2),
}


@dataclass(frozen=True)
class Run:
    target: str  # a TARGETS name
    mode: str  # closed | open | burst
    body: str  # key into body(): plain | stream | stream_each | cache | fallback | slow
    concurrency: int = CONCURRENCY
    rate: float = RATE
    path: str = "openai"  # a PATHS name
    first_round_only: bool = False

    @property
    def key(self) -> str:
        load = f"r{self.rate:g}" if self.mode == "open" else f"c{self.concurrency}"
        via = "" if self.path == "openai" else f"@{self.path}"
        return f"{self.target}:{self.mode}:{self.body}{via}:{load}"

    @property
    def stream(self) -> bool:
        return self.body in ("stream", "stream_each", "slow")


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    runs: tuple[Run, ...]
    quick: bool = True  # part of --quick
    quick_targets: tuple[str, ...] | None = None  # --quick runs only these targets' runs (None: all)


def body(variant: str, target: str, path: str = "openai") -> dict:
    """Request body; direct-to-mock gets the model name a proxy would forward upstream.

    The model name also tells the mock how to write a stream (see ``mock_formats``).
    """
    prefix = "" if TARGET[target].kind == "mock" else f"{PATHS[path].provider}/"
    model = {"stream_each": "bench-model-each", "slow": SLOW_MODEL}.get(variant, "bench-model")
    base: dict = {"model": f"{prefix}{model}", "prompt": "hello", "max_tokens": 16}
    if variant in ("stream", "stream_each", "slow"):
        # include_usage on every target so each stream has the same events whether or not the proxy adds it.
        base.update(stream=True, stream_options={"include_usage": True})
    elif variant == "cache":
        base["cache"] = {"type": "exact_match", "ttl": 600}
    elif variant == "fallback":
        base.update(model=f"{PATHS['dead'].provider}/m", fallbacks=[{"model": f"{prefix}{model}"}])
    return base


def _each(mode: str, variant: str, targets: tuple[str, ...] = tuple(TARGET), **kw: object) -> tuple[Run, ...]:
    return tuple(Run(t, mode, variant, **kw) for t in targets)  # type: ignore[arg-type]


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("throughput", f"Non-stream, closed loop, {CONCURRENCY} connections", _each("closed", "plain")),
    Scenario(
        "stream_one",
        f"Streams of {STREAM_EVENTS} events, the mock writes each stream at once; closed loop {CONCURRENCY}",
        _each("closed", "stream"),
    ),
    Scenario(
        "stream_each",
        f"Streams of {STREAM_EVENTS} events, the mock writes each event separately; closed loop {CONCURRENCY}",
        _each("closed", "stream_each"),
    ),
    Scenario("latency", f"Added latency, open loop {RATE:g} req/s", _each("open", "plain", ONE)),
    Scenario(
        "streams_1000",
        f"{STREAMS:,} streams connecting at once ({SLOW_EVENTS} events {SLOW_DELAY_MS} ms apart)",
        _each("burst", "slow", concurrency=STREAMS, first_round_only=True),
        quick_targets=ONE,  # a burst takes seconds; --quick stays under 2 minutes
    ),
    Scenario(
        "translated",
        f"Translated provider (Anthropic Messages upstream) vs pass-through (OpenAI), Switchyard; closed loop "
        f"{CONCURRENCY}",
        tuple(
            Run(t, "closed", variant, path=p)
            for variant in TRANSLATED
            for p in ("openai", "anthropic")
            for t in ("switchyard", "switchyard2")
        ),
        quick_targets=("switchyard",),  # --quick: one process only, 6 short runs
    ),
    Scenario(
        "cache",
        "Cache-hit vs uncached throughput (Switchyard)",
        (Run("switchyard", "closed", "plain"), Run("switchyard", "closed", "cache")),
        quick=False,
    ),
    Scenario(
        "fallback",
        "Fallback path: primary answers 503 at once, fallback serves (Switchyard)",
        (Run("switchyard", "closed", "plain"), Run("switchyard", "closed", "fallback")),
        quick=False,
    ),
)


def select(only: list[str] | None, quick: bool) -> tuple[Scenario, ...]:
    if not only:
        return tuple(s for s in SCENARIOS if s.quick or not quick)
    names = {s.name for s in SCENARIOS}
    unknown = [n for n in only if n not in names]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {unknown}; choose from {sorted(names)}")
    return tuple(s for s in SCENARIOS if s.name in only)


def runs_for(scenarios: tuple[Scenario, ...], quick: bool = False) -> list[Run]:
    """Unique runs in scenario order."""
    seen: dict[str, Run] = {}
    for sc in scenarios:
        for run in sc.runs:
            if quick and sc.quick_targets is not None and run.target not in sc.quick_targets:
                continue
            seen.setdefault(run.key, run)
    return list(seen.values())


def targets_for(runs: list[Run]) -> set[str]:
    return {r.target for r in runs}
