"""Turns raw load-generator results into the side-by-side table, ratios, target checks and JSON."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .scenarios import (
    CONCURRENCY,
    PAIRS,
    RATE,
    STREAM_EVENTS,
    STREAMS,
    TARGET,
    TARGETS,
    Scenario,
)

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "latest.json"
Results = dict[str, dict]
Metric = Callable[[dict], float | None]

C, R, BURST = f"c{CONCURRENCY}", f"r{RATE:g}", f"c{STREAMS}"
NAMES = tuple(t.name for t in TARGETS)
REFERENCE = {a: b for a, b in PAIRS}  # switchyard target -> its naive reference


# ---- merging the rounds of one run ----
_SUMMED = {"ok", "errors", "completed_total", "target_cpu_s", "generator_cpu_s"}
_MAXED = {"rss_peak_mb", "pss_peak_mb", "foreign_cpu_cores", "mock_cpu_util"}
_COUNTS = {"error_kinds", "header_counts"}


def _sum_counts(items: list[dict]) -> dict:
    out: dict = {}
    for it in items:
        for k, v in it.items():
            out[k] = _sum_counts([out.get(k, {}), v]) if isinstance(v, dict) else out.get(k, 0) + v
    return out


def _merge(items: list[dict]) -> dict:
    out: dict = {}
    for k, first in items[0].items():
        vals = [it.get(k) for it in items]
        if k in _COUNTS:
            out[k] = _sum_counts([v for v in vals if isinstance(v, dict)])
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            nums = [float(v) for v in vals]  # type: ignore[arg-type]
            out[k] = sum(nums) if k in _SUMMED else max(nums) if k in _MAXED else statistics.median(nums)
            if isinstance(first, int) and k in _SUMMED:
                out[k] = int(out[k])
        elif all(isinstance(v, dict) for v in vals):
            out[k] = _merge(vals)  # type: ignore[arg-type]
        else:
            out[k] = first
    return out


def aggregate(rounds: list[dict]) -> dict:
    """Medians over rounds (rates, percentiles), totals for counts, max for peaks; raw rounds kept."""
    good = [r for r in rounds if "failed" not in r]
    if not good:
        return {"failed": "; ".join(r["failed"] for r in rounds), "rounds": rounds}
    return {**_merge(good), "failed_rounds": len(rounds) - len(good), "rounds": rounds}


def path(*keys: str) -> Metric:
    def get(r: dict) -> float | None:
        v: object = r
        for k in keys:
            if not isinstance(v, dict) or v.get(k) is None:
                return None
            v = v[k]
        return float(v)  # type: ignore[arg-type]

    return get


def run(results: Results, target: str, spec: str) -> dict | None:
    """spec is 'mode:body:load', e.g. 'closed:plain:c64'; failed runs count as missing."""
    r = results.get(f"{target}:{spec}")
    return r if r is not None and "failed" not in r else None


def _rounds(results: Results, target: str, spec: str) -> list[dict | None]:
    r = run(results, target, spec)
    if r is None:
        return []
    return [x if "failed" not in x else None for x in r.get("rounds", [r])]


def paired(
    results: Results, a: tuple[str, str], b: tuple[str, str], metric: Metric, op: Callable[[float, float], float | None]
) -> float | None:
    """Median over rounds of op(a_i, b_i): runs of one round ran back to back, under the same conditions."""
    vals = []
    for x, y in zip(_rounds(results, *a), _rounds(results, *b)):
        mx, my = (metric(x) if x else None), (metric(y) if y else None)
        if mx is not None and my is not None and (v := op(mx, my)) is not None:
            vals.append(v)
    return statistics.median(vals) if vals else None


def ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def diff(a: float, b: float) -> float | None:
    return a - b


def hit_share(r: dict) -> float | None:
    """% of responses Switchyard marked as cache hits: proves the cache row measures hits."""
    counts = r.get("header_counts", {}).get("x-switchyard-cache") or {}
    total = sum(counts.values())
    return 100 * counts.get("hit", 0) / total if total else None


@dataclass(frozen=True)
class Row:
    scenario: str
    label: str
    spec: str  # mode:body:load
    metric: Metric
    fmt: str = "{:,.0f}"
    added: bool = False  # value minus the reference's (switchyard - naive, naive - direct), paired by round
    targets: tuple[str, ...] = NAMES
    ratios: bool = True  # False where switchyard ÷ naive means nothing (e.g. how busy the mock was)
    # A spec of the same target to divide by instead of the naive pair: the translated rows
    # divide by the pass-through (OpenAI path) run.
    versus: str | None = None


_MS = "{:.3f}"
_US = "{:,.1f}"
_CORES = "{:.2f}"
_SY = ("switchyard", "switchyard2")


def _translated(body: str, title: str, unit: str, rate: str) -> tuple[Row, ...]:
    """Rows of one body on the translated (Anthropic) path; ratios ÷ the same target's pass-through."""
    spec, passthrough = f"closed:{body}@anthropic:{C}", f"closed:{body}:{C}"
    return (
        Row("translated", f"Translated (Anthropic upstream), {title}: {rate} (ratio: ÷ pass-through)",
            spec, path("rps"), targets=_SY, versus=passthrough),
        Row("translated", f"  CPU per {unit}, µs (ratio: ÷ pass-through)", spec, path("cpu_us_per_request"), _US,
            targets=_SY, versus=passthrough),
        Row("translated", f"  pass-through (OpenAI upstream) CPU per {unit}, µs", passthrough,
            path("cpu_us_per_request"), _US, targets=_SY, ratios=False),
    )


ROWS: tuple[Row, ...] = (
    Row("throughput", f"Non-stream throughput, req/s (C={CONCURRENCY})", f"closed:plain:{C}", path("rps")),
    Row("throughput", "  CPU per request, µs (direct: the mock's)", f"closed:plain:{C}", path("cpu_us_per_request"),
        _US),
    Row("throughput", "  mock busy, cores", f"closed:plain:{C}", path("mock_cpu_util"), _CORES, ratios=False),
    Row(
        "stream_one",
        f"Stream throughput, streams/s ({STREAM_EVENTS} events, mock writes each stream at once)",
        f"closed:stream:{C}",
        path("rps"),
    ),
    Row("stream_one", "  CPU per stream, µs", f"closed:stream:{C}", path("cpu_us_per_request"), _US),
    Row("stream_one", "  mock busy, cores", f"closed:stream:{C}", path("mock_cpu_util"), _CORES, ratios=False),
    Row(
        "stream_each",
        f"Stream throughput, streams/s ({STREAM_EVENTS} events, mock writes each event separately)",
        f"closed:stream_each:{C}",
        path("rps"),
    ),
    Row("stream_each", "  CPU per stream, µs", f"closed:stream_each:{C}", path("cpu_us_per_request"), _US),
    Row("stream_each", "  mock busy, cores", f"closed:stream_each:{C}", path("mock_cpu_util"), _CORES, ratios=False),
    Row("latency", f"Latency p50, ms (open loop {RATE:g} req/s)", f"open:plain:{R}", path("latency_ms", "p50"), _MS),
    Row("latency", "Latency p99, ms", f"open:plain:{R}", path("latency_ms", "p99"), _MS),
    Row("latency", "  added p50, ms (over naive; naive: over direct)", f"open:plain:{R}", path("latency_ms", "p50"),
        "{:+.3f}", added=True),
    Row("latency", "  added p99, ms", f"open:plain:{R}", path("latency_ms", "p99"), "{:+.3f}", added=True),
    Row("streams_1000", f"{STREAMS:,} streams at once: TTFB p50, ms", f"burst:slow:{BURST}", path("ttfb_ms", "p50"),
        "{:,.1f}"),
    Row("streams_1000", "  TTFB p99, ms", f"burst:slow:{BURST}", path("ttfb_ms", "p99"), "{:,.1f}"),
    Row("streams_1000", "  peak RSS of the process tree, MB", f"burst:slow:{BURST}", path("rss_peak_mb"), "{:,.1f}"),
    Row("streams_1000", "  peak PSS of the process tree, MB (shared pages split)", f"burst:slow:{BURST}",
        path("pss_peak_mb"), "{:,.1f}"),
    Row("streams_1000", "  RSS before, MB", f"burst:slow:{BURST}", path("rss_before_mb"), "{:,.1f}"),
    Row("streams_1000", "  streams open at once (peak)", f"burst:slow:{BURST}", path("peak_open_streams")),
    *_translated("plain", "non-stream", "request", "req/s"),
    *_translated("stream", "stream, one write", "stream", "streams/s"),
    *_translated("stream_each", "stream, write per event", "stream", "streams/s"),
    Row("cache", f"Cache-hit throughput, req/s (C={CONCURRENCY})", f"closed:cache:{C}", path("rps"),
        targets=("switchyard",)),
    Row("cache", "  responses marked `x-switchyard-cache: hit`, %", f"closed:cache:{C}", hit_share, "{:.1f}",
        targets=("switchyard",)),
    Row("fallback", f"Fallback throughput, req/s (C={CONCURRENCY})", f"closed:fallback:{C}", path("rps"),
        targets=("switchyard",)),
)


def _reference(target: str) -> str | None:
    """What an `added` row subtracts: a switchyard target's naive pair, a naive target's direct."""
    if target in REFERENCE:
        return REFERENCE[target]
    return "direct" if TARGET[target].kind == "naive" else None


def _value(results: Results, row: Row, target: str) -> float | None:
    if target not in row.targets:
        return None
    if row.added:
        ref = _reference(target)
        return None if ref is None else paired(results, (target, row.spec), (ref, row.spec), row.metric, diff)
    r = run(results, target, row.spec)
    return row.metric(r) if r else None


def _table(results: Results, selected: set[str]) -> list[dict]:
    out = []
    for row in ROWS:
        if row.scenario not in selected:
            continue
        vals = {t: _value(results, row, t) for t in NAMES}
        ratios = {
            f"{a}/{b}": (
                None
                if row.added or not row.ratios
                else (v if (v := paired(results, (a, row.spec), (a, row.versus) if row.versus else (b, row.spec),
                                        row.metric, ratio)) is None
                      else round(v, 4))
            )
            for a, b in PAIRS
        }
        out.append(
            {
                "metric": row.label,
                "scenario": row.scenario,
                "fmt": row.fmt,
                "targets": list(row.targets),
                "added": row.added,
                "ratio_of": "pass-through" if row.versus else "naive",  # what the ratio columns divide by
                **vals,
                "errors": {t: r["errors"] for t in NAMES if (r := run(results, t, row.spec)) and r["errors"]},
                "failed": [t for t in NAMES if "failed" in results.get(f"{t}:{row.spec}", {})],
                **ratios,
            }
        )
    return out


# ---- issue 15's targets: measure(results, switchyard target) -> (measured, passed) or None when not measured;
# passed is None for a figure reported against a limit that is not one of the targets.
Measure = Callable[[Results, str], tuple[float, bool | None] | None]


_TP, _CPU = path("rps"), path("cpu_us_per_request")


def _vs_naive(spec: str, metric: Metric, limit: float, at_least: bool) -> Measure:
    def m(res: Results, t: str) -> tuple[float, bool | None] | None:
        v = paired(res, (t, spec), (REFERENCE[t], spec), metric, ratio)
        return None if v is None else (v, v >= limit if at_least else v <= limit)

    return m


def _over_naive(spec: str, metric: Metric, limit: float) -> Measure:
    def m(res: Results, t: str) -> tuple[float, bool | None] | None:
        v = paired(res, (t, spec), (REFERENCE[t], spec), metric, diff)
        return None if v is None else (v, v <= limit)

    return m


def _own(spec: str, metric: Metric, ok: Callable[[float], bool]) -> Measure:
    def m(res: Results, t: str) -> tuple[float, bool | None] | None:
        r = run(res, t, spec)
        v = metric(r) if r else None
        return None if v is None else (v, ok(v))

    return m


def _vs_passthrough(body: str, limit: float, target: bool = True) -> Measure:
    """CPU per request on the translated path ÷ the same target's on the pass-through path."""

    def m(res: Results, t: str) -> tuple[float, bool | None] | None:
        v = paired(res, (t, f"closed:{body}@anthropic:{C}"), (t, f"closed:{body}:{C}"), _CPU, ratio)
        return None if v is None else (v, v <= limit if target else None)

    return m


def _cache(res: Results, t: str) -> tuple[float, bool | None] | None:
    v = paired(res, (t, f"closed:cache:{C}"), (t, f"closed:plain:{C}"), path("rps"), ratio)
    return None if v is None else (v, v >= 2.0)


# scenario, check, limit, measured fmt, measure
CHECKS: tuple[tuple[str, str, str, str, Measure], ...] = (
    ("throughput", "Non-stream throughput vs naive", "≥ 0.80×", "{:.3f}×",
     _vs_naive(f"closed:plain:{C}", _TP, 0.8, True)),
    ("stream_one", "Stream throughput vs naive (one write)", "≥ 0.80×", "{:.3f}×",
     _vs_naive(f"closed:stream:{C}", _TP, 0.8, True)),
    ("stream_each", "Stream throughput vs naive (write per event)", "≥ 0.80×", "{:.3f}×",
     _vs_naive(f"closed:stream_each:{C}", _TP, 0.8, True)),
    ("stream_one", "CPU per stream vs naive (one write)", "≤ 1.30×", "{:.3f}×",
     _vs_naive(f"closed:stream:{C}", _CPU, 1.3, False)),
    ("stream_each", "CPU per stream vs naive (write per event)", "≤ 1.30×", "{:.3f}×",
     _vs_naive(f"closed:stream_each:{C}", _CPU, 1.3, False)),
    ("latency", f"Added latency p50 over naive at {RATE:g} req/s", "≤ 0.25 ms", "{:+.3f} ms",
     _over_naive(f"open:plain:{R}", path("latency_ms", "p50"), 0.25)),
    ("latency", f"Added latency p99 over naive at {RATE:g} req/s", "≤ 1 ms", "{:+.3f} ms",
     _over_naive(f"open:plain:{R}", path("latency_ms", "p99"), 1.0)),
    ("streams_1000", f"{STREAMS:,} streams at once: TTFB p99 vs naive", "≤ 1.50×", "{:.3f}×",
     _vs_naive(f"burst:slow:{BURST}", path("ttfb_ms", "p99"), 1.5, False)),
    ("streams_1000", f"{STREAMS:,} streams at once: peak RSS", "≤ 150 MB", "{:.1f} MB",
     _own(f"burst:slow:{BURST}", path("rss_peak_mb"), lambda v: v <= 150.0)),
    ("streams_1000", f"{STREAMS:,} streams at once: errors", "0", "{:.0f}",
     _own(f"burst:slow:{BURST}", path("errors"), lambda v: v == 0)),
    ("streams_1000", f"{STREAMS:,} streams at once: open together (peak)", f"{STREAMS:,}", "{:,.0f}",
     _own(f"burst:slow:{BURST}", path("peak_open_streams"), lambda v: v >= STREAMS)),
    ("translated", "Translated provider stream CPU vs pass-through (one write)", "≤ 1.50×", "{:.3f}×",
     _vs_passthrough("stream", 1.5)),
    ("translated", "Translated provider stream CPU vs pass-through (write per event)", "≤ 1.50×", "{:.3f}×",
     _vs_passthrough("stream_each", 1.5)),
    ("translated", "Translated provider non-stream CPU vs pass-through (not a target: for reference)",
     "(≤ 1.50× for streams)", "{:.3f}×", _vs_passthrough("plain", 1.5, target=False)),
    ("cache", "Cache-hit vs uncached throughput", "≥ 2.00×", "{:.2f}×", _cache),
)


def _checks(results: Results, unavailable: dict[str, str], selected: set[str]) -> list[dict]:
    out = []
    for scenario, name, limit, fmt, measure in CHECKS:
        if scenario not in selected:
            continue
        entry: dict = {"check": name, "limit": limit}
        for t, _ in PAIRS:
            m = measure(results, t)
            if t in unavailable:
                entry[t] = {"status": "unavailable"}
            elif m is None:
                entry[t] = {"status": "—"}  # not run (e.g. --quick) or its run failed (see Problems)
            else:
                status = "reported" if m[1] is None else "PASS" if m[1] else "FAIL"
                entry[t] = {"measured": round(m[0], 4), "shown": fmt.format(m[0]), "status": status}
        out.append(entry)
    return out


def build(meta: dict, results: Results, unavailable: dict[str, str], scenarios: tuple[Scenario, ...]) -> dict:
    selected = {s.name for s in scenarios}
    return {
        "meta": meta,
        "unavailable": unavailable,
        "table": _table(results, selected),
        "checks": _checks(results, unavailable, selected),
        "runs": results,
    }


def _cell(row: dict, t: str, unavailable: dict[str, str]) -> str:
    if t not in row["targets"] or (row["added"] and _reference(t) is None):
        return "—"
    if t in unavailable:
        return "unavailable"
    v = row[t]
    if v is None:
        return "failed" if t in row["failed"] else "—"
    errs = row["errors"].get(t)
    return row["fmt"].format(v) + (f" ({errs} err)" if errs else "")


def _num(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}×"


def markdown(doc: dict) -> str:
    meta, unavailable = doc["meta"], doc["unavailable"]
    lines = [
        (
            f"## Switchyard benchmark — profile `{meta['profile']}`, {meta['rounds']} round(s), {meta['cpus']} CPUs, "
            f"Python {meta['python']}, {meta['elapsed_s']:.0f} s"
        ),
        "",
        f"Pinning: {meta['layout']}; mock processes: {meta['mock_processes']}.",
        "",
    ]
    for t, reason in unavailable.items():
        first = next((ln for ln in reversed(reason.splitlines()) if ln.strip()), reason)
        lines += [f"**{t}: unavailable** — {first.strip()[:200]}", ""]
    cols = ["direct", "naive", "switchyard", "switchyard/naive", "naive2", "switchyard2", "switchyard2/naive2"]
    heads = [TARGET[c].label if c in TARGET else ("×1 ratio" if c == "switchyard/naive" else "×2 ratio") for c in cols]
    lines += ["| Metric | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(cols)]
    for row in doc["table"]:
        cells = [_num(row[c]) if "/" in c else _cell(row, c, unavailable) for c in cols]
        lines.append(f"| {row['metric']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        (
            "Ratios are switchyard ÷ naive with the same number of processes, the median of per-round ratios; in"
            " rows marked ÷ pass-through, the same Switchyard target on the translated path ÷ on the OpenAI path."
        ),
        "",
        "### Targets (issue 15)",
        "",
        "| Check | Target | switchyard | switchyard ×2 |",
        "|---|---|---|---|",
    ]
    for c in doc["checks"]:
        shown = [f"{c[t].get('shown', '')} {c[t]['status']}".strip() for t, _ in PAIRS]
        lines.append(f"| {c['check']} | {c['limit']} | {shown[0]} | {shown[1]} |")
    problems = _problems(doc["runs"], meta["mock_processes"])
    if problems:
        lines += ["", "### Problems", ""] + [f"- {p}" for p in problems]
    return "\n".join(lines)


def _problems(runs: Results, mock_processes: int) -> list[str]:
    out = []
    for key, r in runs.items():
        rounds = [x for x in r.get("rounds", [r]) if "failed" not in x]
        if "failed" in r or r.get("failed_rounds"):
            first = next(x["failed"] for x in r.get("rounds", [r]) if "failed" in x)
            out.append(f"{key}: run failed: {first[:300]}")
        if r.get("errors"):
            out.append(f"{key}: {r['errors']} errors {r.get('error_kinds')}")
        closed = [x for x in rounds if x.get("mode") == "closed"]
        if busy := [x["generator_cpu_util"] for x in closed if x.get("generator_cpu_util", 0) > 0.9]:
            out.append(f"{key}: the load generator was near 100% CPU ({max(busy):.2f}): it may be the bottleneck")
        if mock := [x["mock_cpu_util"] for x in closed if x.get("mock_cpu_util", 0) > 0.85 * mock_processes]:
            out.append(
                f"{key}: the mock used {max(mock):.2f} of its {mock_processes} process(es): it may be the bottleneck"
            )
    lagging = {
        k: lag
        for k, r in runs.items()
        if (lag := max([(x.get("send_lag_ms") or {}).get("p99", 0) for x in r.get("rounds", [r])], default=0)) > 2.0
    }
    if lagging:
        out.append(
            "the generator fell behind its open-loop schedule (send lag p99 > 2 ms) in "
            + ", ".join(f"{k} ({v:.1f} ms)" for k, v in lagging.items())
            + ": that much of those latency tails is the generator's own stall (usually CPU contention)"
        )
    noisy = [
        (k, x["foreign_cpu_cores"])
        for k, r in runs.items()
        for x in r.get("rounds", [r])
        if x.get("foreign_cpu_cores", 0) > 0.25
    ]
    if noisy:
        keys = sorted({k for k, _ in noisy})
        out.append(
            f"other jobs on this machine used up to {max(c for _, c in noisy):.2f} cores during {len(noisy)} run(s) "
            f"({', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''}): figures from those runs are noisy"
        )
    return out


def write_json(doc: dict, out: Path = DEFAULT_OUT) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    return out.resolve()
