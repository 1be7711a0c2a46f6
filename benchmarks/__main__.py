"""python -m benchmarks [--quick] [--only NAME ...] [--target all|naive-only] [--pin auto|off]"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from types import FrameType

from . import report
from .procs import ServiceError, raise_nofile
from .runner import Stack, layout, run_one, start_stack
from .scenarios import PROFILES, SCENARIOS, Profile, Run, runs_for, select, targets_for


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks", description="Switchyard vs naive proxy vs direct, side by side."
    )
    ap.add_argument("--quick", action="store_true", help="short runs, fewer scenarios (under 2 min)")
    ap.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"run only this scenario (repeatable): {', '.join(s.name for s in SCENARIOS)}",
    )
    ap.add_argument("--rounds", type=int, help="repeat every run N times, interleaved (default: 3, --quick: 1)")
    ap.add_argument(
        "--target", choices=("all", "naive-only"), default="all", help="naive-only: do not try to start Switchyard"
    )
    ap.add_argument(
        "--pin", choices=("auto", "off"), default="auto", help="auto: the proxy on cores apart from mock and generator"
    )
    ap.add_argument("--mock-processes", type=int, help="mock processes (default: one per core the mock is pinned to)")
    ap.add_argument("--out", type=Path, default=report.DEFAULT_OUT, help="JSON output path")
    return ap.parse_args(argv)


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwind through the finally blocks so children are stopped


def _run_and_log(run: Run, stack: Stack, profile: Profile, raw: dict[str, list[dict]], label: str) -> None:
    if run.target in stack.unavailable:
        print(f"{label}: skipped (unavailable)", file=sys.stderr)
        return
    proc = stack.services[run.target].proc
    try:
        if proc is not None and proc.poll() is not None:  # died mid-suite: fail its runs, keep the rest going
            raise RuntimeError(
                f"{run.target} exited with code {proc.returncode}: {stack.services[run.target].log_tail(2)}"
            )
        r = run_one(run, stack, profile)
    except RuntimeError as exc:
        r = {"failed": str(exc)}
        print(f"{label}: FAILED {exc}", file=sys.stderr)
    else:
        print(
            f"{label}: {r['rps']:,.0f}/s, errors {r['errors']}, {r['cpu_us_per_request']} µs CPU/req, "
            f"target CPU {r['target_cpu_util']:.2f}, mock {r['mock_cpu_util']:.2f}, "
            f"other jobs {r['foreign_cpu_cores']:.2f} cores",
            file=sys.stderr,
            flush=True,
        )
    raw.setdefault(run.key, []).append(r)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    profile_name = "quick" if args.quick else "default"
    profile = PROFILES[profile_name]
    scenarios = select(args.only, args.quick)
    runs = runs_for(scenarios, args.quick)
    raise_nofile()
    rounds = args.rounds or profile.rounds
    lay = layout(args.pin == "auto")
    mock_processes = args.mock_processes or (len(lay.mock) if lay.mock else 1)
    print(f"pinning: {lay.describe()}; mock processes: {mock_processes}", file=sys.stderr)
    raw: dict[str, list[dict]] = {}
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="switchyard-bench-") as tmp:
        stack = Stack(Path(tmp), lay)
        try:
            try:
                start_stack(stack, targets_for(runs), args.target == "all", mock_processes)
            except ServiceError as exc:
                print(f"cannot start the benchmark stack: {exc}", file=sys.stderr)
                return 2
            for name, reason in stack.unavailable.items():
                print(f"{name} unavailable: {reason}", file=sys.stderr)
            for rnd in range(1, rounds + 1):
                for run in runs:
                    if run.first_round_only and rnd > 1:
                        continue
                    _run_and_log(run, stack, profile, raw, f"[round {rnd}/{rounds}] {run.key}")
        finally:
            stack.stop()
    meta = {
        "profile": profile_name,
        "profile_s": asdict(profile),
        "rounds": rounds,
        "scenarios": [s.name for s in scenarios],
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "elapsed_s": round(time.time() - started, 1),
        "cpus": os.cpu_count(),
        "layout": lay.describe(),
        "mock_processes": mock_processes,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    results = {key: report.aggregate(rs) for key, rs in raw.items()}
    doc = report.build(meta, results, stack.unavailable, scenarios)
    print(report.markdown(doc))
    path = report.write_json(doc, args.out)
    print(f"\nJSON written to {path}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # children were already stopped by the finally blocks
        print("interrupted", file=sys.stderr)
        sys.exit(130)
