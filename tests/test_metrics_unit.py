"""Unit tests of proxy.observability.metrics (single-process and multiprocess mode)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from proxy.observability import metrics as metrics_mod
from proxy.observability.metrics import Metrics, mark_process_dead
from tests.proxy_process import REPO

ROUTE = "/v2/router/completions"


@pytest.fixture(autouse=True)
def _single_process(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.delenv("prometheus_multiproc_dir", raising=False)


def val(m: Metrics, name: str, **labels) -> float:
    """Current value of one sample; 0 when the series does not exist yet."""
    v = m.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


def label_sets(m: Metrics, sample_name: str) -> set[tuple]:
    out = set()
    for fam in m.registry.collect():
        for s in fam.samples:
            if s.name == sample_name:
                out.add(tuple(sorted((k, v) for k, v in s.labels.items() if k != "le")))
    return out


def finish(m: Metrics, **kw) -> None:
    args = {
        "route": ROUTE,
        "provider": "openai",
        "model": "gpt-4o",
        "status": 200,
        "cache": "miss",
        "stream": False,
        "duration_s": 0.3,
        "overhead_s": 0.0004,
    }
    args.update(kw)
    m.request_finished(**args)


# ------------------------------------------------------------------ exact movements
def test_request_counters_and_histograms_move_exactly():
    m = Metrics(["openai", "claude"], version="9.9.9")
    for _ in range(3):
        m.request_started(False)
        finish(m, duration_s=0.3, overhead_s=0.0004)
    m.request_started(True)
    finish(m, status=429, cache="miss", stream=True, duration_s=7.0, overhead_s=0.003)
    m.request_started(False)
    finish(m, cache="hit", duration_s=0.004, overhead_s=0.00004)

    req = "switchyard_requests_total"
    assert (
        val(
            m,
            req,
            route=ROUTE,
            provider="openai",
            model="gpt-4o",
            status="200",
            cache="miss",
        )
        == 3
    )
    assert (
        val(
            m,
            req,
            route=ROUTE,
            provider="openai",
            model="gpt-4o",
            status="429",
            cache="miss",
        )
        == 1
    )
    assert (
        val(
            m,
            req,
            route=ROUTE,
            provider="openai",
            model="gpt-4o",
            status="200",
            cache="hit",
        )
        == 1
    )

    lab = {"route": ROUTE, "provider": "openai", "model": "gpt-4o"}
    d = "switchyard_request_duration_seconds"
    assert val(m, d + "_count", **lab) == 5
    assert val(m, d + "_sum", **lab) == pytest.approx(3 * 0.3 + 7.0 + 0.004)
    assert val(m, d + "_bucket", le="0.005", **lab) == 1
    assert val(m, d + "_bucket", le="0.25", **lab) == 1
    assert val(m, d + "_bucket", le="0.5", **lab) == 4
    assert val(m, d + "_bucket", le="5.0", **lab) == 4
    assert val(m, d + "_bucket", le="10.0", **lab) == 5
    assert val(m, d + "_bucket", le="120.0", **lab) == 5
    assert val(m, d + "_bucket", le="+Inf", **lab) == 5

    o = "switchyard_overhead_seconds"
    assert val(m, o + "_count", route=ROUTE) == 5
    assert val(m, o + "_sum", route=ROUTE) == pytest.approx(
        3 * 0.0004 + 0.003 + 0.00004
    )
    assert val(m, o + "_bucket", route=ROUTE, le="5e-05") == 1
    assert val(m, o + "_bucket", route=ROUTE, le="0.0005") == 4
    assert val(m, o + "_bucket", route=ROUTE, le="0.0025") == 4
    assert val(m, o + "_bucket", route=ROUTE, le="0.005") == 5

    assert val(m, "switchyard_build_info", version="9.9.9") == 1
    assert val(m, "switchyard_in_flight_requests") == 0
    assert val(m, "switchyard_active_streams") == 0


def test_upstream_ttft_tokens_retries_fallbacks_cache():
    m = Metrics(["openai", "claude"])
    m.upstream_finished(
        provider="openai", model="gpt-4o", status="429", duration_s=0.05
    )
    m.upstream_finished(
        provider="openai", model="gpt-4o", status="429", duration_s=0.07
    )
    m.upstream_finished(
        provider="openai", model="gpt-4o", status="timeout", duration_s=30.0
    )
    m.upstream_finished(provider="claude", model="sonnet", status="200", duration_s=1.5)
    m.retry(provider="openai", model="gpt-4o")
    m.retry(provider="openai", model="gpt-4o")
    m.fallback(provider="openai", model="gpt-4o")
    m.first_token(provider="claude", model="sonnet", seconds=0.4)
    m.first_token(provider="claude", model="sonnet", seconds=0.6)
    m.tokens(provider="claude", model="sonnet", prompt=120, completion=30)
    m.tokens(provider="claude", model="sonnet", prompt=5, completion=0)
    m.tokens(
        provider="claude", model="sonnet", prompt=None, completion=-3
    )  # skipped, never raises
    for r in ("hit", "miss", "miss", "error"):
        m.cache_result(r)

    u = "switchyard_upstream_requests_total"
    assert val(m, u, provider="openai", model="gpt-4o", status="429") == 2
    assert val(m, u, provider="openai", model="gpt-4o", status="timeout") == 1
    assert val(m, u, provider="claude", model="sonnet", status="200") == 1
    ud = "switchyard_upstream_duration_seconds"
    assert val(m, ud + "_count", provider="openai", model="gpt-4o", status="429") == 2
    assert val(
        m, ud + "_sum", provider="openai", model="gpt-4o", status="429"
    ) == pytest.approx(0.12)
    assert (
        val(
            m,
            ud + "_bucket",
            provider="openai",
            model="gpt-4o",
            status="timeout",
            le="20.0",
        )
        == 0
    )
    assert (
        val(
            m,
            ud + "_bucket",
            provider="openai",
            model="gpt-4o",
            status="timeout",
            le="30.0",
        )
        == 1
    )

    assert val(m, "switchyard_retries_total", provider="openai", model="gpt-4o") == 2
    assert val(m, "switchyard_fallbacks_total", provider="openai", model="gpt-4o") == 1

    t = "switchyard_time_to_first_token_seconds"
    assert val(m, t + "_count", provider="claude", model="sonnet") == 2
    assert val(m, t + "_sum", provider="claude", model="sonnet") == pytest.approx(1.0)
    assert val(m, t + "_bucket", provider="claude", model="sonnet", le="0.5") == 1
    assert val(m, t + "_bucket", provider="claude", model="sonnet", le="0.75") == 2

    tk = "switchyard_tokens_total"
    assert val(m, tk, provider="claude", model="sonnet", type="prompt") == 125
    assert val(m, tk, provider="claude", model="sonnet", type="completion") == 30

    c = "switchyard_cache_requests_total"
    assert (
        val(m, c, result="hit"),
        val(m, c, result="miss"),
        val(m, c, result="error"),
    ) == (1, 2, 1)


def test_bad_durations_do_not_poison_sums():
    m = Metrics(["openai"])
    m.upstream_finished(
        provider="openai", model="m", status="200", duration_s=float("nan")
    )
    m.upstream_finished(provider="openai", model="m", status="200", duration_s=-0.2)
    m.first_token(provider="openai", model="m", seconds=float("inf"))
    s = val(
        m,
        "switchyard_upstream_duration_seconds_sum",
        provider="openai",
        model="m",
        status="200",
    )
    assert s == 0 and math.isfinite(s)
    assert (
        val(
            m,
            "switchyard_upstream_duration_seconds_count",
            provider="openai",
            model="m",
            status="200",
        )
        == 2
    )
    assert (
        val(
            m,
            "switchyard_time_to_first_token_seconds_sum",
            provider="openai",
            model="m",
        )
        == 0
    )


# ------------------------------------------------------------------ label bounding
def test_unknown_provider_becomes_other_with_model_other():
    m = Metrics(["openai"])
    m.upstream_finished(
        provider="evilcorp", model="anything-at-all", status="200", duration_s=0.1
    )
    m.retry(provider="evilcorp", model="x")
    m.request_started(False)
    finish(m, provider="evilcorp", model="y")
    assert (
        val(
            m,
            "switchyard_upstream_requests_total",
            provider="other",
            model="other",
            status="200",
        )
        == 1
    )
    assert val(m, "switchyard_retries_total", provider="other", model="other") == 1
    assert (
        val(
            m,
            "switchyard_requests_total",
            route=ROUTE,
            provider="other",
            model="other",
            status="200",
            cache="miss",
        )
        == 1
    )
    assert {
        dict(ls)["provider"]
        for ls in label_sets(m, "switchyard_upstream_requests_total")
    } == {"other"}


def test_model_cap_keeps_first_values_then_other():
    m = Metrics(["openai"], max_models=3)
    for name in ("a", "b", "c", "d", "e", "a", "c", "f"):
        m.upstream_finished(
            provider="openai", model=name, status="200", duration_s=0.01
        )
    got = {
        dict(ls)["model"]: None
        for ls in label_sets(m, "switchyard_upstream_requests_total")
    }
    assert set(got) == {"a", "b", "c", "other"}
    assert (
        val(
            m,
            "switchyard_upstream_requests_total",
            provider="openai",
            model="a",
            status="200",
        )
        == 2
    )
    assert (
        val(
            m,
            "switchyard_upstream_requests_total",
            provider="openai",
            model="c",
            status="200",
        )
        == 2
    )
    assert (
        val(
            m,
            "switchyard_upstream_requests_total",
            provider="openai",
            model="other",
            status="200",
        )
        == 3
    )
    # the cap is per process, shared by every metric
    m.tokens(provider="openai", model="d", prompt=1, completion=1)
    m.tokens(provider="openai", model="b", prompt=1, completion=1)
    assert (
        val(
            m,
            "switchyard_tokens_total",
            provider="openai",
            model="other",
            type="prompt",
        )
        == 1
    )
    assert (
        val(m, "switchyard_tokens_total", provider="openai", model="b", type="prompt")
        == 1
    )


def test_models_of_unknown_providers_do_not_consume_the_cap():
    m = Metrics(["openai"], max_models=1)
    m.first_token(provider="nope", model="z", seconds=0.1)
    m.first_token(provider="", model="y", seconds=0.1)
    m.first_token(provider="openai", model="kept", seconds=0.1)
    assert (
        val(
            m,
            "switchyard_time_to_first_token_seconds_count",
            provider="openai",
            model="kept",
        )
        == 1
    )


def test_no_provider_is_none():
    m = Metrics(["openai"])
    m.request_started(False)
    finish(m, provider="", model="", status=401, cache="")
    m.request_started(False)
    finish(m, provider=None, model=None, status=400, cache=None)
    m.request_started(False)
    finish(m, provider="none", model="none", status=400, cache="none")
    m.request_started(False)
    finish(m, provider="none", model="sneaky", status=400, cache="none")
    req = "switchyard_requests_total"
    assert (
        val(
            m,
            req,
            route=ROUTE,
            provider="none",
            model="none",
            status="401",
            cache="none",
        )
        == 1
    )
    assert (
        val(
            m,
            req,
            route=ROUTE,
            provider="none",
            model="none",
            status="400",
            cache="none",
        )
        == 2
    )
    assert (
        val(
            m,
            req,
            route=ROUTE,
            provider="none",
            model="other",
            status="400",
            cache="none",
        )
        == 1
    )


def test_unbounded_inputs_keep_series_and_caches_bounded():
    m = Metrics(["openai"], max_models=10)
    for i in range(3000):
        m.request_started(i % 2 == 0)
        finish(
            m,
            provider=f"p{i}" if i % 3 else "openai",
            model=f"m{i}",
            route=f"/r{i % 100}",
            cache=f"c{i}",
            status=200 + i % 7,
            stream=i % 2 == 0,
        )
        m.upstream_finished(
            provider="openai", model=f"m{i}", status=f"s{i}", duration_s=0.1
        )
        m.cache_result(f"weird{i}")
    assert len(label_sets(m, "switchyard_requests_total")) < 2000
    models = {dict(ls)["model"] for ls in label_sets(m, "switchyard_requests_total")}
    assert len(models) <= 11 and "other" in models
    routes = {
        dict(ls)["route"] for ls in label_sets(m, "switchyard_overhead_seconds_count")
    }
    assert len(routes) <= metrics_mod._MAX_ROUTES + 1
    caches = {
        dict(ls)["result"] for ls in label_sets(m, "switchyard_cache_requests_total")
    }
    assert len(caches) <= metrics_mod._MAX_CACHE_RESULTS + 1
    statuses = {
        dict(ls)["status"] for ls in label_sets(m, "switchyard_upstream_requests_total")
    }
    assert len(statuses) <= metrics_mod._MAX_STATUSES + 1
    # child caches never hold client-controlled keys beyond the bounded label sets
    assert len(m._upstream_children) <= 2 * (11 * (metrics_mod._MAX_STATUSES + 1))
    assert len(m._cache_children) <= 2 * (metrics_mod._MAX_CACHE_RESULTS + 1)
    assert val(m, "switchyard_in_flight_requests") == 0
    assert val(m, "switchyard_active_streams") == 0


def test_label_cache_hit_path_matches_slow_path():
    m = Metrics(["openai"])
    for _ in range(5):
        m.request_started(False)
        finish(m)  # status int 200: cached under the raw key after the first call
    m.request_started(False)
    finish(m, status="200")  # same series via a str status
    assert (
        val(
            m,
            "switchyard_requests_total",
            route=ROUTE,
            provider="openai",
            model="gpt-4o",
            status="200",
            cache="miss",
        )
        == 6
    )
    assert len(label_sets(m, "switchyard_requests_total")) == 1


# ------------------------------------------------------------------ gauges
def test_gauges_follow_requests_and_return_to_zero():
    m = Metrics(["openai"])
    g, s = "switchyard_in_flight_requests", "switchyard_active_streams"
    m.request_started(True)
    m.request_started(False)
    m.request_started(True)
    assert (val(m, g), val(m, s)) == (3, 2)
    finish(m, stream=True)
    assert (val(m, g), val(m, s)) == (2, 1)
    finish(m, stream=False, status=500)
    finish(m, stream=True, status=499)
    assert (val(m, g), val(m, s)) == (0, 0)
    # an unmatched finish never drives a gauge negative
    finish(m, stream=True)
    assert (val(m, g), val(m, s)) == (0, 0)
    m.request_started(True)
    assert (val(m, g), val(m, s)) == (1, 1)
    finish(m, stream=True)
    assert (val(m, g), val(m, s)) == (0, 0)


def test_stream_known_only_after_routing():
    m = Metrics(["openai"])
    g, s = "switchyard_in_flight_requests", "switchyard_active_streams"
    m.request_started(stream=False)
    m.request_started(stream=False)
    assert (val(m, g), val(m, s)) == (2, 0)
    m.stream_started()  # first request turned out to be a stream
    assert (val(m, g), val(m, s)) == (2, 1)
    finish(m, stream=True)
    finish(m, stream=False, status=400)
    assert (val(m, g), val(m, s)) == (0, 0)


def test_gauges_are_decremented_even_when_labels_are_garbage():
    m = Metrics(["openai"])
    m.request_started(True)
    with pytest.raises(TypeError):
        finish(m, stream=True, model=["unhashable"])
    assert val(m, "switchyard_in_flight_requests") == 0
    assert val(m, "switchyard_active_streams") == 0


def test_instances_are_independent_and_render_parses():
    a, b = Metrics(["openai"]), Metrics(["openai"])
    a.request_started(False)
    finish(a)
    assert (
        val(
            a,
            "switchyard_requests_total",
            route=ROUTE,
            provider="openai",
            model="gpt-4o",
            status="200",
            cache="miss",
        )
        == 1
    )
    assert (
        val(
            b,
            "switchyard_requests_total",
            route=ROUTE,
            provider="openai",
            model="gpt-4o",
            status="200",
            cache="miss",
        )
        == 0
    )
    body, ctype = a.render()
    assert ctype.startswith("text/plain") and "version=0.0.4" in ctype
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    expected = {
        "switchyard_requests",
        "switchyard_request_duration_seconds",
        "switchyard_upstream_duration_seconds",
        "switchyard_upstream_requests",
        "switchyard_time_to_first_token_seconds",
        "switchyard_overhead_seconds",
        "switchyard_tokens",
        "switchyard_retries",
        "switchyard_fallbacks",
        "switchyard_cache_requests",
        "switchyard_in_flight_requests",
        "switchyard_active_streams",
        "switchyard_build_info",
    }
    assert expected <= names
    assert b"_created" not in body


# ------------------------------------------------------------------ multiprocess
WORKER = textwrap.dedent(
    """
    import json, os, sys
    from proxy.observability.metrics import Metrics
    n, streams, left_open, model = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    m = Metrics(["openai", "claude"], version="mp-test")
    assert m.multiprocess
    for i in range(n):
        stream = i < streams
        m.request_started(stream)
        m.cache_result("miss")
        m.upstream_finished(provider="openai", model=model, status="200", duration_s=0.2)
        m.tokens(provider="openai", model=model, prompt=10, completion=2)
        m.request_finished(route="/v2/router/completions", provider="openai", model=model, status=200,
                           cache="miss", stream=stream, duration_s=0.25, overhead_s=0.0002)
    for _ in range(left_open):
        m.request_started(True)      # still "in flight" when the process exits
    print(json.dumps({"pid": os.getpid()}))
    """
)
RENDER = textwrap.dedent(
    """
    import sys
    from proxy.observability.metrics import Metrics
    body, ctype = Metrics(["openai", "claude"]).render()
    sys.stdout.write(body.decode())
    """
)
# Imports prometheus_client before the variable is set (as a server setting it for --workers would).
LATE_ENV = textwrap.dedent(
    """
    import os, sys
    import prometheus_client
    from proxy.observability.metrics import Metrics
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[1]
    m = Metrics(["openai"])
    m.request_started(False)
    m.request_finished(route="/late", provider="openai", model="x", status=200, cache="miss", stream=False,
                       duration_s=0.1, overhead_s=0.0001)
    print(sorted(os.listdir(sys.argv[1])))
    """
)


def _env(mp_dir: Path | None) -> dict:
    env = dict(os.environ)
    env.pop("prometheus_multiproc_dir", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if mp_dir is not None:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(mp_dir)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _render(mp_dir: Path) -> dict[tuple, float]:
    out = subprocess.run(
        [sys.executable, "-c", RENDER],
        env=_env(mp_dir),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    samples = {}
    for fam in text_string_to_metric_families(out):
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def _get(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_multiprocess_two_workers_sum_in_render(tmp_path):
    mp = tmp_path / "prom"
    mp.mkdir()
    # two workers running at the same time, each with its own Metrics instance
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, "7", "3", "1", "gpt-4o"],
            env=_env(mp),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ),
        subprocess.Popen(
            [sys.executable, "-c", WORKER, "5", "5", "0", "gpt-4o"],
            env=_env(mp),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ),
    ]
    pids = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        pids.append(json.loads(out.strip().splitlines()[-1])["pid"])
    assert pids[0] != pids[1]

    s = _render(mp)
    lab = {"route": ROUTE, "provider": "openai", "model": "gpt-4o"}
    assert _get(s, "switchyard_requests_total", status="200", cache="miss", **lab) == 12
    assert _get(s, "switchyard_request_duration_seconds_count", **lab) == 12
    assert _get(s, "switchyard_request_duration_seconds_sum", **lab) == pytest.approx(
        12 * 0.25
    )
    assert _get(s, "switchyard_request_duration_seconds_bucket", le="0.25", **lab) == 12
    assert _get(s, "switchyard_request_duration_seconds_bucket", le="0.1", **lab) == 0
    assert (
        _get(
            s,
            "switchyard_upstream_requests_total",
            provider="openai",
            model="gpt-4o",
            status="200",
        )
        == 12
    )
    assert (
        _get(
            s,
            "switchyard_tokens_total",
            provider="openai",
            model="gpt-4o",
            type="prompt",
        )
        == 120
    )
    assert _get(s, "switchyard_cache_requests_total", result="miss") == 12
    assert _get(s, "switchyard_overhead_seconds_count", route=ROUTE) == 12
    # livesum: worker 0 exited with one stream still open and has not been marked dead yet
    assert _get(s, "switchyard_in_flight_requests") == 1
    assert _get(s, "switchyard_active_streams") == 1
    assert (
        _get(s, "switchyard_build_info", version="mp-test") == 1
    )  # livemax, not a sum over workers

    mark_process_dead(pids[0], path=str(mp))
    mark_process_dead(pids[1], path=str(mp))
    s = _render(mp)
    assert _get(s, "switchyard_in_flight_requests") == 0
    assert _get(s, "switchyard_active_streams") == 0
    # counters of dead workers are kept
    assert _get(s, "switchyard_requests_total", status="200", cache="miss", **lab) == 12


def test_multiprocess_env_set_after_prometheus_client_import(tmp_path):
    mp = tmp_path / "prom"
    mp.mkdir()
    out = subprocess.run(
        [sys.executable, "-c", LATE_ENV, str(mp)],
        check=False,
        env=_env(None),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert any(f.startswith("counter_") for f in os.listdir(mp))
    s = _render(mp)
    assert (
        _get(
            s,
            "switchyard_requests_total",
            route="/late",
            provider="openai",
            model="x",
            status="200",
            cache="miss",
        )
        == 1
    )


def test_clear_multiproc_dir_and_mark_dead_noop(tmp_path):
    (tmp_path / "counter_1.db").write_bytes(b"")
    (tmp_path / "keep.txt").write_text("x")
    metrics_mod.clear_multiproc_dir(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["keep.txt"]
    mark_process_dead(12345)  # single-process mode: nothing to do, must not raise


def test_fast_updates_expose_what_the_public_methods_do():
    """proxy.observability.fast_updates skips prometheus_client's per-call checks (and, in a
    single process, its mutex): the exposition must be byte for byte what inc(), observe() and
    set() give, bucket edges included."""
    from prometheus_client import (
        CollectorRegistry,
        Counter,
        Gauge,
        Histogram,
        generate_latest,
    )

    from proxy.observability.fast_updates import adder, observer, setter

    buckets = (0.001, 0.01, 0.1, 1.0)
    amounts = [0.0, 0.0005, 0.001, 0.0011, 0.01, 0.05, 0.1, 1.0, 1.5, 1e9, 3.0]

    def exposition(fast: bool) -> bytes:
        reg = CollectorRegistry()
        counter = Counter("c_total", "c", ["k"], registry=reg).labels("a")
        hist = Histogram("h_seconds", "h", ["k"], registry=reg, buckets=buckets).labels("a")
        gauge = Gauge("g", "g", registry=reg)
        add, observe, put = ((adder(counter), observer(hist), setter(gauge)) if fast
                             else (counter.inc, hist.observe, gauge.set))
        for amount in amounts:
            add(amount)
            observe(amount)
            put(amount)
        return b"\n".join(line for line in generate_latest(reg).splitlines() if b"_created" not in line)

    assert exposition(fast=True) == exposition(fast=False)
