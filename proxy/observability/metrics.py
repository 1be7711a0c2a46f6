"""Prometheus metrics of the proxy.

Everything the proxy exports lives here, behind a narrow API that the request path calls
(:class:`Metrics`). Names are prefixed ``switchyard_`` and are a contract for dashboards and
alerts (``configs/grafana/switchyard.json``, ``configs/prometheus/alerts.yml``).

Label cardinality stays bounded whatever the clients send:

* ``provider``: one of the configured providers, else ``"other"``; an empty/None/``"none"``
  provider (no provider chosen yet, e.g. auth or validation failure) is ``"none"``.
* ``model``: the first ``max_models`` distinct values seen by this process are kept, later ones
  become ``"other"``. A model of an unknown provider is ``"other"`` as well; empty/None is
  ``"none"``; absurdly long values are ``"other"``.
* ``route``, ``cache`` and upstream ``status`` are produced by the proxy itself, but are still
  capped (a bug must not explode the series count).

Multiprocess: when ``PROMETHEUS_MULTIPROC_DIR`` is set, values are written to mmap files in that
directory (prometheus-client's multiprocess mode); gauges use ``livesum`` (``livemax`` for
``build_info``) and :meth:`Metrics.render` merges every process's files. The parent calls
:func:`mark_process_dead` when a worker exits and should empty the directory at start
(:func:`clear_multiproc_dir`). One :class:`Metrics` instance per process in that mode.

Without the variable every instance has its own private ``CollectorRegistry``.

Hot path: ``.labels()`` children are cached in dicts keyed by the already-bounded label tuples,
so a request costs a few dict lookups plus the increments themselves.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client import multiprocess as _pc_multiprocess
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from proxy.observability.fast_updates import Update, adder, observer, setter
from proxy.observability.labels import (
    _MAX_CACHE_RESULTS,
    _MAX_ROUTES,
    _MAX_STATUSES,
    NONE,
    OTHER,
    OVERHEAD_BUCKETS,
    REQUEST_BUCKETS,
    TTFT_BUCKETS,
    _Capped,
    _seconds,
)
from proxy.observability.multiproc import (
    ENV_MULTIPROC_DIR,
    clear_multiproc_dir,
    ensure_value_class,
    mark_process_dead,
    multiproc_dir,
)

__all__ = [
    "ENV_MULTIPROC_DIR",
    "NONE",
    "OTHER",
    "OVERHEAD_BUCKETS",
    "REQUEST_BUCKETS",
    "TTFT_BUCKETS",
    "Metrics",
    "clear_multiproc_dir",
    "mark_process_dead",
    "multiproc_dir",
]

# `*_created` series double the series count of every counter and histogram for no practical
# use; nobody graphs them. (Multiprocess mode never emits them anyway.)
disable_created_metrics()

CONTENT_TYPE = (
    CONTENT_TYPE_PLAIN_0_0_4  # classic text format; every Prometheus version parses it
)

def _default_version() -> str:
    try:
        return importlib.metadata.version("switchyard")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        return "unknown"


class Metrics:
    """Every Prometheus metric of the proxy; the request path calls the methods below."""

    def __init__(
        self,
        known_providers: Iterable[str],
        max_models: int = 200,
        *,
        version: str | None = None,
    ) -> None:
        self._mp_dir = multiproc_dir()
        self.multiprocess = self._mp_dir is not None
        if self.multiprocess and not os.path.isdir(self._mp_dir):  # type: ignore[arg-type]
            raise ValueError(f"{ENV_MULTIPROC_DIR}={self._mp_dir!r} is not a directory")
        ensure_value_class(self.multiprocess)

        self._providers = frozenset(str(p) for p in known_providers)
        self._model = _Capped(max(0, int(max_models)))
        self._route = _Capped(_MAX_ROUTES)
        self._cache = _Capped(_MAX_CACHE_RESULTS)
        self._ustatus = _Capped(_MAX_STATUSES)

        # Metric objects are registered only in single-process mode; in multiprocess mode they
        # write to mmap files and render() collects those.
        if self.multiprocess:
            self.registry: CollectorRegistry | None = None
            reg = None
        else:
            self.registry = CollectorRegistry(auto_describe=True)
            reg = self.registry
            ProcessCollector(registry=reg)
            PlatformCollector(registry=reg)

        self.requests_total = Counter(
            "switchyard_requests_total",
            "Client requests finished, by route, serving provider/model, HTTP status and cache result.",
            ["route", "provider", "model", "status", "cache"],
            registry=reg,
        )
        self.request_duration = Histogram(
            "switchyard_request_duration_seconds",
            "Whole client request duration (for streams: until the last byte), seconds.",
            ["route", "provider", "model"],
            buckets=REQUEST_BUCKETS,
            registry=reg,
        )
        self.overhead = Histogram(
            "switchyard_overhead_seconds",
            "Proxy's own time per request: total minus time waiting on upstream, seconds.",
            ["route"],
            buckets=OVERHEAD_BUCKETS,
            registry=reg,
        )
        self.upstream_duration = Histogram(
            "switchyard_upstream_duration_seconds",
            "Duration of one upstream attempt, by outcome (HTTP status, timeout, connection_error...), seconds.",
            ["provider", "model", "status"],
            buckets=REQUEST_BUCKETS,
            registry=reg,
        )
        self.upstream_requests_total = Counter(
            "switchyard_upstream_requests_total",
            "Upstream attempts, by outcome (HTTP status, timeout, connection_error...).",
            ["provider", "model", "status"],
            registry=reg,
        )
        self.ttft = Histogram(
            "switchyard_time_to_first_token_seconds",
            "Time from the client request to the first content chunk sent, seconds.",
            ["provider", "model"],
            buckets=TTFT_BUCKETS,
            registry=reg,
        )
        self.tokens_total = Counter(
            "switchyard_tokens_total",
            "Tokens reported by upstream usage, by type (prompt|completion).",
            ["provider", "model", "type"],
            registry=reg,
        )
        self.retries_total = Counter(
            "switchyard_retries_total",
            "Retries of the same candidate after a retryable failure.",
            ["provider", "model"],
            registry=reg,
        )
        self.fallbacks_total = Counter(
            "switchyard_fallbacks_total",
            "Candidates that finally failed and were left for the next fallback (labels: the failed one).",
            ["provider", "model"],
            registry=reg,
        )
        self.cache_requests_total = Counter(
            "switchyard_cache_requests_total",
            "Response cache lookups by result (hit|miss|error).",
            ["result"],
            registry=reg,
        )
        self.in_flight = Gauge(
            "switchyard_in_flight_requests",
            "Client requests being handled now (streams included).",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.active_streams = Gauge(
            "switchyard_active_streams",
            "Streaming (SSE) client requests being handled now.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.circuit_states = Gauge(
            "switchyard_circuit_state",
            "Circuit breaker state per provider/model (model * for a per-provider circuit): "
            "0 closed, 1 half-open, 2 open.",
            ["provider", "model"],
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.circuit_transitions_total = Counter(
            "switchyard_circuit_transitions_total",
            "Circuit breaker state changes, by the state entered (open|half_open|closed).",
            ["provider", "model", "to"],
            registry=reg,
        )
        self.build_info = Gauge(
            "switchyard_build_info",
            "Always 1; the version label tells which build runs.",
            ["version"],
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.build_info.labels(version or _default_version()).set(1)
        self._init_key_metrics(reg)

        # Process-local counts behind the gauges: gauges are set from these, so they can never go
        # below zero, and in multiprocess mode each process owns exactly its share (livesum).
        self._n_in_flight = 0
        self._n_streams = 0
        self._set_in_flight = setter(self.in_flight)
        self._set_streams = setter(self.active_streams)
        self._set_in_flight(0)
        self._set_streams(0)

        # label tuple -> children
        self._finish_children: dict[tuple, tuple] = {}
        self._upstream_children: dict[tuple, tuple] = {}
        self._ttft_children: dict[tuple, object] = {}
        self._token_children: dict[tuple, tuple] = {}
        self._retry_children: dict[tuple, object] = {}
        self._fallback_children: dict[tuple, object] = {}
        self._cache_children: dict[str, object] = {}
        self._circuit_children: dict[tuple, object] = {}
        self._circuit_values: dict[tuple, int] = {}

    # ---------------------------------------------------------------- label bounding
    def _pm(self, provider: object, model: object) -> tuple[str, str]:
        if provider in self._providers:
            return provider, self._model(model)  # type: ignore[return-value]
        if provider is None or provider == "" or provider == NONE:
            return NONE, (
                NONE if model is None or model == "" or model == NONE else OTHER
            )
        return OTHER, OTHER

    def _stable(self, provider: object, model: object, model_label: str) -> bool:
        """May (provider, model) be used as a cache key as is? Only when it maps to a bounded
        label pair (known provider and stored or empty model, or both empty), so the child caches
        never grow with unbounded client-controlled values."""
        empty_model = model is None or model == ""
        if provider in self._providers:
            return empty_model or model_label == model
        return (provider is None or provider == "" or provider == NONE) and (
            empty_model or model == NONE
        )

    def add_providers(self, names: Iterable[str]) -> None:
        """Providers added by a config reload become label values too (a union: requests still
        running on the old config keep theirs)."""
        self._providers = self._providers | frozenset(str(p) for p in names)

    # ---------------------------------------------------------------- gauges
    def request_started(self, stream: bool) -> None:
        """A client request entered the proxy. Pair with exactly one request_finished, whose `stream`
        is True iff this call had stream=True or stream_started() was called for the request."""
        self._n_in_flight += 1
        self._set_in_flight(self._n_in_flight)
        if stream:
            self._n_streams += 1
            self._set_streams(self._n_streams)

    def stream_started(self) -> None:
        """The request turned out to be a stream (known only after routing): active streams +1.

        For a request started with ``request_started(stream=False)``; its ``request_finished`` must
        then pass ``stream=True`` (and only then), exactly as if it had started as a stream.
        """
        self._n_streams += 1
        self._set_streams(self._n_streams)

    def request_finished(
        self,
        *,
        route: str,
        provider: str,
        model: str,
        status: int,
        cache: str,
        stream: bool,
        duration_s: float,
        overhead_s: float,
    ) -> None:
        """A client request is done (response or stream fully written, or failed, or cancelled)."""
        # Gauges first: whatever happens below, what request_started added is taken back.
        if self._n_in_flight > 0:
            self._n_in_flight -= 1
            self._set_in_flight(self._n_in_flight)
        if stream and self._n_streams > 0:
            self._n_streams -= 1
            self._set_streams(self._n_streams)

        key = (route, provider, model, status, cache)
        children = self._finish_children.get(key)
        if children is None:
            children = self._finish_children_for(route, provider, model, status, cache)
        count, duration, overhead = children
        count(1)
        duration(_seconds(duration_s))
        overhead(_seconds(overhead_s))

    def _finish_children_for(self, route, provider, model, status, cache) -> tuple:
        r = self._route(route)
        p, m = self._pm(provider, model)
        s = str(status) if status is not None else NONE
        if len(s) > 3 or not s.isdigit():  # HTTP status codes only
            s = OTHER
        c = self._cache(cache)
        norm = (r, p, m, s, c)
        children = self._finish_children.get(norm)
        if children is None:
            children = (
                adder(self.requests_total.labels(r, p, m, s, c)),
                observer(self.request_duration.labels(r, p, m)),
                observer(self.overhead.labels(r)),
            )
            self._finish_children[norm] = children
        # Also cache under the raw key when every raw value is a stable, bounded one (a stored
        # label or empty), so the dict is bounded by the label cardinality, never by what clients
        # sent, and the next identical call is one dict lookup.
        if (
            self._stable(provider, model, m)
            and _is_label(self._route, route)
            and _is_label(self._cache, cache)
            and s != OTHER
            and (status is None or isinstance(status, int) or status == s)
        ):
            self._finish_children[(route, provider, model, status, cache)] = children
        return children

    # ---------------------------------------------------------------- upstream
    def upstream_finished(
        self, *, provider: str, model: str, status: str, duration_s: float
    ) -> None:
        """One upstream attempt ended: status is the HTTP status ("200", "429"...) or "timeout",
        "connection_error"...; duration_s is the time waited on upstream for this attempt."""
        key = (provider, model, status)
        children = self._upstream_children.get(key)
        if children is None:
            p, m = self._pm(provider, model)
            s = self._ustatus(status)
            norm = (p, m, s)
            children = self._upstream_children.get(norm)
            if children is None:
                children = (
                    adder(self.upstream_requests_total.labels(p, m, s)),
                    observer(self.upstream_duration.labels(p, m, s)),
                )
                self._upstream_children[norm] = children
            if self._stable(provider, model, m) and s == status:
                self._upstream_children[key] = children
        count, duration = children
        count(1)
        duration(_seconds(duration_s))

    def first_token(self, *, provider: str, model: str, seconds: float) -> None:
        """The first content chunk was sent `seconds` after the request arrived."""
        key = (provider, model)
        child = self._ttft_children.get(key)
        if child is None:
            child = self._pm_child(
                self._ttft_children, provider, model, lambda p, m: observer(self.ttft.labels(p, m))
            )
        child(_seconds(seconds))  # type: ignore[operator]

    def tokens(
        self, *, provider: str, model: str, prompt: int, completion: int
    ) -> None:
        """Usage reported by upstream (or by the cached response). None/negative counts are skipped."""
        children = self._token_children.get((provider, model))
        if children is None:
            children = self._pm_child(
                self._token_children, provider, model, self._token_pair
            )
        if prompt and prompt > 0:
            children[0](prompt)
        if completion and completion > 0:
            children[1](completion)

    def retry(self, *, provider: str, model: str) -> None:
        """The same candidate is tried again."""
        child = self._retry_children.get((provider, model))
        if child is None:
            child = self._pm_child(
                self._retry_children, provider, model, self.retries_total.labels
            )
        child.inc()  # type: ignore[attr-defined]

    def fallback(self, *, provider: str, model: str) -> None:
        """The candidate (provider, model) finally failed and the next one is tried."""
        child = self._fallback_children.get((provider, model))
        if child is None:
            child = self._pm_child(
                self._fallback_children, provider, model, self.fallbacks_total.labels
            )
        child.inc()  # type: ignore[attr-defined]

    def circuit_state(self, *, provider: str, model: str, state: int) -> None:
        """A breaker's state as this process last saw it (0 closed, 1 half-open, 2 open)."""
        if self._circuit_values.get((provider, model)) == state:
            return  # the common case: nothing changed, nothing to write
        child = self._circuit_children.get((provider, model))
        if child is None:
            child = self._pm_child(self._circuit_children, provider, model, self.circuit_states.labels)
        child.set(state)  # type: ignore[attr-defined]
        if len(self._circuit_values) < 4096:
            self._circuit_values[(provider, model)] = state

    def circuit_transition(self, *, provider: str, model: str, to: str) -> None:
        p, m = self._pm(provider, model)
        self.circuit_transitions_total.labels(p, m, to if to in _CIRCUIT_STATES else OTHER).inc()

    def _token_pair(self, p: str, m: str) -> tuple:
        return adder(self.tokens_total.labels(p, m, "prompt")), adder(self.tokens_total.labels(p, m, "completion"))

    def _pm_child(self, cache: dict, provider, model, make: Callable[[str, str], Any]):
        """Slow path of the (provider, model) metrics: bound the labels, build the child
        with make(provider_label, model_label) once, cache it under the bounded labels and,
        when stable, under the raw pair too."""
        p, m = self._pm(provider, model)
        child = cache.get((p, m))
        if child is None:
            child = cache[(p, m)] = make(p, m)
        if self._stable(provider, model, m):
            cache[(provider, model)] = child
        return child

    # ---------------------------------------------------------------- cache
    def cache_result(self, result: str) -> None:
        """Outcome of a response-cache lookup: "hit" | "miss" | "error"."""
        child = self._cache_children.get(result)
        if child is None:
            r = self._cache(result)
            child = self._cache_children.get(r)
            if child is None:
                child = self.cache_requests_total.labels(r)
                self._cache_children[r] = child
            if r == result:
                self._cache_children[result] = child
        child.inc()  # type: ignore[attr-defined]

    # ---------------------------------------------------------------- per key (limits and usage)
    def _init_key_metrics(self, reg: CollectorRegistry | None) -> None:
        """Labelled by the API key's configured *name*: bounded by the config (DESIGN.md,
        "Observability"); a name the config does not list is "other"."""
        self._keys: frozenset[str] = frozenset()
        self.key_requests_total = Counter(
            "switchyard_key_requests_total",
            "Requests per API key name (authenticated and decoded), by HTTP status.",
            ["key", "status"], registry=reg)
        self.key_tokens_total = Counter(
            "switchyard_key_tokens_total",
            "Tokens per API key name from upstream usage, by type (prompt|completion|reasoning; "
            "completion includes reasoning).", ["key", "type"], registry=reg)
        self.key_cost_total = Counter(
            "switchyard_key_cost_total",
            "Cost per API key name, from usage and the config's pricing table (its currency).",
            ["key"], registry=reg)
        self.rate_limited_total = Counter(
            "switchyard_rate_limited_total",
            "Requests refused with 429 by a per-key limit, by limit kind.", ["key", "limit"], registry=reg)
        self.budget_remaining = Gauge(
            "switchyard_key_budget_remaining",
            "What is left of a key's budget in its current period (tokens or cost), as last seen.",
            ["key", "budget", "scope"], registry=reg, multiprocess_mode="mostrecent")
        self.limiter_unavailable_total = Counter(
            "switchyard_limiter_unavailable_total",
            "Requests the limiter could not check or settle (its Redis unreachable), by the "
            "configured behaviour (fail_open|fail_closed).", ["mode"], registry=reg)
        self.limiter_degraded = Gauge(
            "switchyard_limiter_degraded",
            "1 while the limiter cannot reach its store, else 0.", registry=reg, multiprocess_mode="livemax")
        self.limiter_degraded.set(0)
        self._key_children: dict[tuple, Any] = {}
        self._key_requests: dict[tuple[str, int], Update] = {}

    def add_keys(self, names: Iterable[str]) -> None:
        """Key names from the config (a reload adds; requests on the old config keep theirs)."""
        self._keys = self._keys | frozenset(str(n) for n in names)

    def _key(self, name: object) -> str:
        return name if name in self._keys else OTHER  # type: ignore[return-value]

    def _key_child(self, metric: Any, *labels: str) -> Any:
        cache_key = (id(metric), *labels)
        child = self._key_children.get(cache_key)
        if child is None:
            child = self._key_children[cache_key] = metric.labels(*labels)
        return child

    def _key_adder(self, metric: Any, *labels: str) -> Update:
        cache_key = ("add", id(metric), *labels)
        add = self._key_children.get(cache_key)
        if add is None:
            add = self._key_children[cache_key] = adder(self._key_child(metric, *labels))
        return add  # type: ignore[no-any-return]

    def key_request(self, *, key: str, status: int) -> None:
        add = self._key_requests.get((key, status))
        if add is None:
            s = str(status)
            if len(s) != 3 or not s.isdigit():
                s = OTHER
            add = self._key_adder(self.key_requests_total, self._key(key), s)
            if len(self._key_requests) < 4096 and key in self._keys:  # bounded by the config's names
                self._key_requests[(key, status)] = add
        add(1)

    def key_usage(self, *, key: str, prompt: int, completion: int, reasoning: int, cost: float) -> None:
        k = self._key(key)
        for kind, value in (("prompt", prompt), ("completion", completion), ("reasoning", reasoning)):
            if value and value > 0:
                self._key_adder(self.key_tokens_total, k, kind)(value)
        if cost > 0:
            self._key_adder(self.key_cost_total, k)(cost)

    def rate_limited(self, *, key: str, limit: str) -> None:
        self._key_child(self.rate_limited_total, self._key(key), limit).inc()

    def key_budget(self, *, key: str, budget: str, scope: str, remaining: float) -> None:
        self._key_child(self.budget_remaining, self._key(key), budget, scope).set(max(0.0, remaining))

    def limiter_unavailable(self, *, mode: str) -> None:
        self._key_child(self.limiter_unavailable_total, mode).inc()
        self.limiter_degraded.set(1)

    def limiter_ok(self) -> None:
        self.limiter_degraded.set(0)

    # ---------------------------------------------------------------- exposition
    def render(self) -> tuple[bytes, str]:
        """(body, content type) for GET /metrics; in multiprocess mode merges every process."""
        if self.multiprocess:
            registry = CollectorRegistry()
            _pc_multiprocess.MultiProcessCollector(registry, path=self._mp_dir)
            return generate_latest(registry), CONTENT_TYPE
        return generate_latest(self.registry), CONTENT_TYPE  # type: ignore[arg-type]


_CIRCUIT_STATES = frozenset({"open", "half_open", "closed"})


def _is_label(capped: _Capped, value: object) -> bool:
    """True when `value` maps to itself (a stored label) or is empty (always "none")."""
    if value is None or value == "":
        return True
    return isinstance(value, str) and capped(value) == value
