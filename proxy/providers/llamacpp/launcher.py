"""The child process: llama.cpp's HTTP server (from the `xllamacpp` wheel) on a loopback port.

Run as `python -m proxy.providers.llamacpp.launcher --model FILE --port N ...` by
`process.ManagedServer`; the key clients must send comes in `SWITCHYARD_LLAMA_KEY`, not argv, so
`ps` does not show it. A separate process rather than a thread in the proxy: llama.cpp's
threads, allocator and signal handlers stay out of the event loop, a crash in it cannot take the
proxy down, and stopping it is one signal.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import socket
import sys

KEY_ENV = "SWITCHYARD_LLAMA_KEY"
EXIT_PORT_TAKEN = 98  # EADDRINUSE: the proxy draws another port instead of reporting a failure
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """SIGKILL when the proxy process dies, however it dies: no orphan keeps the port and the RAM."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the proxy's stop() is the only way out
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _port_free(host: str, port: int) -> bool:
    """Checked before loading the model: llama.cpp reports a taken port like any other failure."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as llama.cpp's own bind does
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="switchyard-llamacpp")
    parser.add_argument("--model", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--context", type=int, default=2048, help="tokens per slot")
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--parent", type=int, default=0)
    args = parser.parse_args(argv)
    if args.parent:
        _die_with_parent(args.parent)
    if not _port_free(args.host, args.port):
        print(f"switchyard-llamacpp: {args.host}:{args.port} is taken", file=sys.stderr, flush=True)
        return EXIT_PORT_TAKEN

    import xllamacpp  # only here: the proxy process never loads llama.cpp

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    # Responses name the model by its file's stem, not by a path in someone's home directory.
    params.model_alias = {os.path.splitext(os.path.basename(args.model))[0]}
    params.hostnames = [args.host]
    params.port = args.port
    params.n_parallel = args.parallel
    params.n_ctx = args.context * args.parallel  # llama.cpp splits n_ctx between the slots
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.n_threads_http = args.parallel + 2  # llama.cpp's own minimum; its default is one per core
    key = os.environ.pop(KEY_ENV, "")
    if key:
        params.api_keys = [key]
    try:
        server = xllamacpp.Server(params)  # returns once the port listens and the model is loaded
    except RuntimeError as err:
        print(f"switchyard-llamacpp: {err}", file=sys.stderr, flush=True)
        return 1
    # llama.cpp installed its own SIGTERM/SIGINT handlers, which end its loop but not this
    # process; nothing here needs flushing, so a stop is an immediate, clean exit.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: os._exit(0))
    print(f"switchyard-llamacpp: listening on {server.listening_address}", file=sys.stderr, flush=True)
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
