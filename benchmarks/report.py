"""Turns raw load-generator results into the side-by-side table, ratios, target checks and JSON."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .scenarios import CONCURRENCY, RATE, STREAM_CHUNKS, STREAM_RATE, STREAMS, TARGETS, Scenario

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "latest.json"
Results = dict[str, dict]
Metric = Callable[[dict], float | None]

C, R, SR = f"c{CONCURRENCY}", f"r{RATE:g}", f"r{STREAM_RATE:g}"
SOAK = f"c{STREAMS}"


# ---- merging the rounds of one run ----
_SUMMED = {"ok", "errors", "completed_total", "target_cpu_s", "generator_cpu_s"}
_MAXED = {"rss_peak_mb", "foreign_cpu_cores"}
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
    spec: str
    metric: Metric
    fmt: str = "{:,.0f}"
    added: bool = False  # report value minus direct's (the proxy's own share)
    targets: tuple[str, ...] = TARGETS


ROWS: tuple[Row, ...] = (
    Row("throughput", f"Non-stream throughput, req/s (C={CONCURRENCY})", f"closed:plain:{C}", path("rps")),
    Row(
        "throughput",
        "  CPU per request in the process hit, µs (mock when direct)",
        f"closed:plain:{C}",
        path("cpu_us_per_request"),
        "{:,.1f}",
    ),
    Row(
        "stream_throughput",
        f"Stream throughput, streams/s (C={CONCURRENCY}, {STREAM_CHUNKS} chunks)",
        f"closed:stream:{C}",
        path("rps"),
    ),
    Row("stream_throughput", "  SSE events relayed/s", f"closed:stream:{C}", path("chunks_per_s")),
    Row(
        "stream_throughput",
        "  CPU per stream in the process hit, µs",
        f"closed:stream:{C}",
        path("cpu_us_per_request"),
        "{:,.1f}",
    ),
    Row("latency", f"Latency p50, ms (open loop {RATE:g}/s)", f"open:plain:{R}", path("latency_ms", "p50"), "{:.3f}"),
    Row("latency", f"Latency p99, ms (open loop {RATE:g}/s)", f"open:plain:{R}", path("latency_ms", "p99"), "{:.3f}"),
    Row("latency", "  added p50 over direct, ms", f"open:plain:{R}", path("latency_ms", "p50"), "{:+.3f}", added=True),
    Row("latency", "  added p99 over direct, ms", f"open:plain:{R}", path("latency_ms", "p99"), "{:+.3f}", added=True),
    Row(
        "stream_ttfb",
        f"Stream TTFB p50, ms (open loop {STREAM_RATE:g}/s)",
        f"open:stream:{SR}",
        path("ttfb_ms", "p50"),
        "{:.3f}",
    ),
    Row("stream_ttfb", "Stream TTFB p99, ms", f"open:stream:{SR}", path("ttfb_ms", "p99"), "{:.3f}"),
    Row(
        "stream_ttfb",
        "  added TTFB p50 over direct, ms",
        f"open:stream:{SR}",
        path("ttfb_ms", "p50"),
        "{:+.3f}",
        added=True,
    ),
    Row("stream_ttfb", "Stream full response p50, ms", f"open:stream:{SR}", path("latency_ms", "p50"), "{:.3f}"),
    Row(
        "cache",
        f"Cache-hit throughput, req/s (C={CONCURRENCY})",
        f"closed:cache:{C}",
        path("rps"),
        targets=("switchyard",),
    ),
    Row(
        "cache",
        "  responses marked `x-switchyard-cache: hit`, %",
        f"closed:cache:{C}",
        hit_share,
        "{:.1f}",
        targets=("switchyard",),
    ),
    Row(
        "fallback",
        f"Fallback throughput, req/s (C={CONCURRENCY})",
        f"closed:fallback:{C}",
        path("rps"),
        targets=("switchyard",),
    ),
    Row(
        "fallback",
        f"Fallback latency p50, ms (open loop {RATE:g}/s)",
        f"open:fallback:{R}",
        path("latency_ms", "p50"),
        "{:.3f}",
        targets=("switchyard",),
    ),
    Row(
        "fallback",
        "Fallback latency p99, ms",
        f"open:fallback:{R}",
        path("latency_ms", "p99"),
        "{:.3f}",
        targets=("switchyard",),
    ),
    Row(
        "streams_1000",
        f"{STREAMS:,} streams: peak RSS of the process hit, MB",
        f"closed:slow:{SOAK}",
        path("rss_peak_mb"),
        "{:,.1f}",
    ),
    Row("streams_1000", "  RSS before the run, MB", f"closed:slow:{SOAK}", path("rss_before_mb"), "{:,.1f}"),
    Row("streams_1000", "  SSE events relayed/s", f"closed:slow:{SOAK}", path("chunks_per_s")),
    Row("streams_1000", "  peak streams open at once", f"closed:slow:{SOAK}", path("peak_open_streams")),
    Row("streams_1000", "  stream TTFB p99, ms", f"closed:slow:{SOAK}", path("ttfb_ms", "p99"), "{:,.1f}"),
)


def _value(results: Results, row: Row, target: str) -> float | None:
    if row.added:
        return paired(results, (target, row.spec), ("direct", row.spec), row.metric, diff)
    r = run(results, target, row.spec)
    return row.metric(r) if r else None


def _ratio(results: Results, row: Row, vals: dict[str, float | None], a: str, b: str) -> float | None:
    if row.added:  # ratio of two already-paired differences
        va, vb = vals[a], vals[b]
        return round(va / vb, 4) if va is not None and vb else None
    v = paired(results, (a, row.spec), (b, row.spec), row.metric, ratio)
    return None if v is None else round(v, 4)


def _table(results: Results, selected: set[str]) -> list[dict]:
    out = []
    for row in ROWS:
        if row.scenario not in selected:
            continue
        vals = {
            t: (_value(results, row, t) if t in row.targets and not (row.added and t == "direct") else None)
            for t in TARGETS
        }
        errs = {t: r["errors"] for t in TARGETS if (r := run(results, t, row.spec)) and r["errors"]}
        failed = [t for t in TARGETS if "failed" in results.get(f"{t}:{row.spec}", {})]
        out.append(
            {
                "metric": row.label,
                "scenario": row.scenario,
                "fmt": row.fmt,
                "targets": list(row.targets),
                "added": row.added,
                **vals,
                "errors": errs,
                "failed": failed,
                **{
                    f"{a}/{b}": _ratio(results, row, vals, a, b)
                    for a, b in (("switchyard", "naive"), ("switchyard", "direct"), ("naive", "direct"))
                },
            }
        )
    return out


# ---- target checks: measure(results, target) -> (measured, passed) or None when not measurable ----
Measure = Callable[[Results, str], tuple[float, bool] | None]


def _tp_vs_naive(spec: str, floor: float) -> Measure:
    def m(res: Results, t: str) -> tuple[float, bool] | None:
        if t == "naive":
            return None  # naive against itself says nothing
        v = paired(res, (t, spec), ("naive", spec), path("rps"), ratio)
        return None if v is None else (v, v >= floor)

    return m


def _added(spec: str, metric: Metric, limit: float) -> Measure:
    def m(res: Results, t: str) -> tuple[float, bool] | None:
        v = paired(res, (t, spec), ("direct", spec), metric, diff)
        return None if v is None else (v, v <= limit)

    return m


def _cache(res: Results, t: str) -> tuple[float, bool] | None:
    if t != "switchyard":
        return None
    v = paired(res, (t, f"closed:cache:{C}"), (t, f"closed:plain:{C}"), path("rps"), ratio)
    return None if v is None else (v, v >= 2.0)


def _rss(res: Results, t: str) -> tuple[float, bool] | None:
    r = run(res, t, f"closed:slow:{SOAK}")
    return (r["rss_peak_mb"], r["rss_peak_mb"] <= 150.0) if r else None


def _soak_errors(res: Results, t: str) -> tuple[float, bool] | None:
    r = run(res, t, f"closed:slow:{SOAK}")
    return (r["errors"], r["errors"] == 0) if r else None


def _soak_open(res: Results, t: str) -> tuple[float, bool] | None:
    # Open = response headers received and stream not finished; all of them at once is the point.
    r = run(res, t, f"closed:slow:{SOAK}")
    return (r.get("peak_open_streams", 0), r.get("peak_open_streams", 0) >= STREAMS) if r else None


CHECKS: tuple[tuple[str, str, str, str, Measure], ...] = (  # scenario, check, limit, measured fmt, measure
    ("throughput", "Non-stream throughput vs naive", "≥ 0.80×", "{:.2f}×", _tp_vs_naive(f"closed:plain:{C}", 0.8)),
    (
        "latency",
        "Added latency p50",
        "≤ 0.5 ms",
        "{:+.3f} ms",
        _added(f"open:plain:{R}", path("latency_ms", "p50"), 0.5),
    ),
    ("latency", "Added latency p99", "≤ 2 ms", "{:+.3f} ms", _added(f"open:plain:{R}", path("latency_ms", "p99"), 2.0)),
    ("stream_throughput", "Stream throughput vs naive", "≥ 0.80×", "{:.2f}×", _tp_vs_naive(f"closed:stream:{C}", 0.8)),
    (
        "stream_ttfb",
        "Added stream TTFB p50",
        "≤ 1 ms",
        "{:+.3f} ms",
        _added(f"open:stream:{SR}", path("ttfb_ms", "p50"), 1.0),
    ),
    ("cache", "Cache-hit vs uncached throughput", "≥ 2.0×", "{:.2f}×", _cache),
    ("streams_1000", f"{STREAMS:,} streams: peak RSS", "≤ 150 MB", "{:.1f} MB", _rss),
    ("streams_1000", f"{STREAMS:,} streams: errors", "0", "{:.0f}", _soak_errors),
    ("streams_1000", f"{STREAMS:,} streams: open at once (peak)", f"{STREAMS:,}", "{:,.0f}", _soak_open),
)


def _checks(results: Results, unavailable: dict[str, str], selected: set[str]) -> list[dict]:
    out = []
    for scenario, name, limit, fmt, measure in CHECKS:
        if scenario not in selected:
            continue
        entry: dict = {"check": name, "limit": limit}
        for t in ("switchyard", "naive"):
            m = measure(results, t)
            if t in unavailable:
                entry[t] = {"status": "unavailable"}
            elif m is None:
                entry[t] = {"status": "n/a" if t == "naive" else "not measured"}
            else:
                entry[t] = {"measured": round(m[0], 4), "shown": fmt.format(m[0]), "status": "PASS" if m[1] else "FAIL"}
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
    if t not in row["targets"] or (row["added"] and t == "direct"):
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
    title = (
        f"## Switchyard benchmark — profile `{meta['profile']}`, {meta['rounds']} round(s), {meta['cpus']} CPUs, "
        f"Python {meta['python']}, {meta['elapsed_s']:.0f} s"
    )
    lines = [title, ""]
    for t, reason in unavailable.items():
        first = next((ln for ln in reversed(reason.splitlines()) if ln.strip()), reason)
        lines += [f"**{t}: unavailable** — {first.strip()[:200]}", ""]
    lines += [
        "| Metric | direct | naive | switchyard | switchyard/naive | switchyard/direct | naive/direct |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in doc["table"]:
        cells = [_cell(row, t, unavailable) for t in TARGETS]
        lines.append(
            f"| {row['metric']} | "
            + " | ".join(cells)
            + " | "
            + " | ".join(_num(row[k]) for k in ("switchyard/naive", "switchyard/direct", "naive/direct"))
            + " |"
        )
    lines += ["", "### Targets", "", "| Check | Target | switchyard | naive (reference) |", "|---|---|---|---|"]
    for c in doc["checks"]:
        shown = [f"{c[t].get('shown', '')} {c[t]['status']}".strip() for t in ("switchyard", "naive")]
        lines.append(f"| {c['check']} | {c['limit']} | {shown[0]} | {shown[1]} |")
    problems = _problems(doc["runs"])
    if problems:
        lines += ["", "### Problems", ""] + [f"- {p}" for p in problems]
    return "\n".join(lines)


def _problems(runs: Results) -> list[str]:
    out = []
    for key, r in runs.items():
        rounds = [x for x in r.get("rounds", [r]) if "failed" not in x]
        if "failed" in r or r.get("failed_rounds"):
            first = next(x["failed"] for x in r.get("rounds", [r]) if "failed" in x)
            out.append(f"{key}: run failed: {first[:300]}")
        if r.get("errors"):
            out.append(f"{key}: {r['errors']} errors {r.get('error_kinds')}")
        busy = [
            x["generator_cpu_util"]
            for x in rounds
            if x.get("mode") == "closed" and x.get("generator_cpu_util", 0) > 0.9
        ]
        if busy:
            out.append(f"{key}: the load generator was near 100% CPU ({max(busy):.2f}): it may be the bottleneck")
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
        worst = max(c for _, c in noisy)
        out.append(
            f"other jobs on this machine used up to {worst:.2f} cores during {len(noisy)} run(s) "
            f"({', '.join(sorted({k for k, _ in noisy})[:4])}{', ...' if len({k for k, _ in noisy}) > 4 else ''}): "
            "figures from those runs are noisy"
        )
    return out


def write_json(doc: dict, out: Path = DEFAULT_OUT) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    return out.resolve()
