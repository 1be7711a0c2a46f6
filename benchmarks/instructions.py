"""Instructions per request: the naive proxy and Switchyard run under valgrind's callgrind, and
each is sent the same requests one after another on one keep-alive connection.

    python -m benchmarks.instructions [--requests 1000] [--warmup 200] [--only plain --only stream]

CPU time per request moves by up to ~15% between runs on a shared 2-core machine, which hides
any change smaller than that. Callgrind counts the user-space instructions a process executes,
which do not depend on what else the machine is doing: the same code and requests give the same
count to about 0.1%. It does not see the kernel (syscalls, loopback TCP) nor cache misses, so it
complements the CPU-time rows of `python -m benchmarks`, it does not replace them: use it to tell
whether a change to the proxy's own code made it cheaper, and by how much.

For each target: start it under callgrind, send `--warmup` requests of a kind, zero the counters
(`callgrind_control --zero`), send `--requests` more, dump (`--dump`), and divide. The mock
upstream runs normally. Needs valgrind (Debian's `valgrind` package); the run takes a few minutes.

`--budget` also measures Switchyard with each part of `benchmarks.ablate` left out in turn, then
with all of them: what each part costs a request, and what the rest of the proxy costs without
any of them (about a minute per part and kind).
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .ablate import PARTS
from .procs import Service, free_port
from .runner import API_KEY, ROOT, SWITCHYARD_CMD, switchyard_config
from .scenarios import body

KINDS = ("plain", "stream", "stream_each")  # scenarios.body variants
READY_SECONDS = 180.0  # starting Python under callgrind takes ~20 s here


def send(port: int, payload: bytes, count: int) -> None:
    """`count` requests on one keep-alive connection, each read to its end; any non-200 is fatal."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    try:
        for _ in range(count):
            conn.request("POST", "/v2/router/completions", body=payload, headers=headers)
            response = conn.getresponse()
            data = response.read()
            if response.status != 200:
                raise SystemExit(f"status {response.status}: {data[:300]!r}")
    finally:
        conn.close()


def callgrind(command: str, pid: int) -> None:
    subprocess.run(["callgrind_control", command, str(pid)], check=True, capture_output=True, timeout=60)


def instructions(dump: Path) -> int:
    """The `summary:` line of a callgrind dump: every instruction executed since the last zero."""
    for line in dump.read_text().splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise SystemExit(f"no summary line in {dump}")


def measure(name: str, argv: list[str], port: int, tmp: Path, kinds: list[str], args: argparse.Namespace,
            path: str, label: str | None = None) -> dict[str, float]:
    """`name`: the scenarios target the requests are written for; `label` (default: the name)
    names the run's dumps, log and progress lines."""
    label = label or name
    out = tmp / f"{label}.callgrind"
    for stale in tmp.glob(f"{label}.callgrind*"):  # an earlier run's dumps in a --keep directory
        stale.unlink()
    service = Service(label, ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=no",
                              *argv], f"http://127.0.0.1:{port}/healthz", tmp / f"{label}.log", ROOT)
    per_request: dict[str, float] = {}
    try:
        service.start()
        service.wait_ready(READY_SECONDS)
        for kind in kinds:
            payload = json.dumps(body(kind, name, path)).encode()  # name is a scenarios target
            send(port, payload, args.warmup)
            callgrind("--zero", service.pid)
            started = time.monotonic()
            send(port, payload, args.requests)
            callgrind(f"--dump={kind}", service.pid)
            # callgrind numbers its dumps .1, .2, ... in the order they were asked for
            dumps = sorted(tmp.glob(f"{label}.callgrind.*"), key=lambda p: int(p.suffix[1:]))
            per_request[kind] = instructions(dumps[-1]) / args.requests
            print(f"{label} {kind}: {per_request[kind]:,.0f} instructions/request "
                  f"({time.monotonic() - started:.0f} s)", file=sys.stderr)
    finally:
        service.stop()
    return per_request


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=1000, help="requests counted per kind")
    ap.add_argument("--warmup", type=int, default=200, help="requests sent before counting, per kind")
    ap.add_argument("--only", action="append", choices=sorted(KINDS), help="request kinds (default: all)")
    ap.add_argument("--keep", type=Path, help="directory to keep the callgrind dumps in, for callgrind_annotate")
    ap.add_argument("--target", action="append", choices=["naive", "switchyard"],
                    help="targets to measure (default: both, and their ratio)")
    ap.add_argument("--budget", action="store_true",
                    help="also measure Switchyard without each part of benchmarks.ablate, and without all")
    args = ap.parse_args()
    missing = [tool for tool in ("valgrind", "callgrind_control") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"needs {', '.join(missing)} (Debian: apt-get install valgrind)")
    kinds = args.only or list(KINDS)
    with tempfile.TemporaryDirectory(prefix="sy-instr-") as name:
        tmp = Path(name)
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            tmp = args.keep
        mock_port, naive_port, sy_port = free_port(), free_port(), free_port()
        mock = Service("mock", [sys.executable, "-m", "benchmarks.mock_upstream", "--port", str(mock_port),
                                "--processes", "1"], f"http://127.0.0.1:{mock_port}/healthz", tmp / "mock.log", ROOT)
        config = tmp / "switchyard.yaml"
        config.write_text(switchyard_config(sy_port, mock_port, 1))
        try:
            mock.start()
            mock.wait_ready(15)
            targets = args.target or ["naive", "switchyard"]
            naive: dict[str, float] = {}
            ours: dict[str, float] = {}
            if "naive" in targets:
                naive = measure("naive", [sys.executable, "-m", "benchmarks.naive_proxy", "--port", str(naive_port),
                                      "--upstream", f"http://127.0.0.1:{mock_port}/v1"],
                                naive_port, tmp, kinds, args, "openai")
            if "switchyard" in targets or args.budget:
                ours = measure("switchyard", [*SWITCHYARD_CMD, str(config)], sy_port, tmp, kinds, args, "openai")
            without: dict[str, dict[str, float]] = {}
            if args.budget:
                for parts in [[part] for part in PARTS] + [list(PARTS)]:
                    argv = [sys.executable, "-m", "benchmarks.ablate", *(f"--without={p}" for p in parts),
                            "--config", str(config)]
                    label = parts[0] if len(parts) == 1 else "all"
                    without[label] = measure("switchyard", argv, sy_port, tmp, kinds, args, "openai",
                                             label=f"without-{label}")
        finally:
            mock.stop()
    print("| Request kind | naive, instructions/request | Switchyard | ratio |")
    print("|---|---|---|---|")
    for kind in kinds:
        cells = [f"{row[kind]:,.0f}" if kind in row else "—" for row in (naive, ours)]
        ratio = f"{ours[kind] / naive[kind]:.2f}×" if kind in naive and kind in ours else "—"
        print(f"| {kind} | {cells[0]} | {cells[1]} | {ratio} |")
    if without:
        print_budget(kinds, naive, ours, without)


def print_budget(kinds: list[str], naive: dict[str, float], ours: dict[str, float],
                 without: dict[str, dict[str, float]]) -> None:
    """Instructions each part costs a request (Switchyard with it minus without it), then what is
    left with every part out, and that as a ratio to the naive proxy when it was measured."""
    print()
    print("| Left out | " + " | ".join(f"{kind}: instructions saved" for kind in kinds) + " |")
    print("|---|" + "---:|" * len(kinds))
    for part, (what, _) in PARTS.items():
        saved = [f"{ours[kind] - without[part][kind]:,.0f}" for kind in kinds]
        print(f"| {part}: {what} | " + " | ".join(saved) + " |")
    left = [f"{without['all'][kind]:,.0f} left" + (f" ({without['all'][kind] / naive[kind]:.2f}× naive)"
                                                    if kind in naive else "") for kind in kinds]
    print(f"| all of them ({', '.join(PARTS)}) | " + " | ".join(left) + " |")


if __name__ == "__main__":
    main()
