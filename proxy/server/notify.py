"""systemd's sd_notify protocol, without libsystemd: one datagram to `$NOTIFY_SOCKET`.

`Type=notify` units wait for READY=1 before they count as started; STOPPING=1 and RELOADING=1
let `systemctl status` show what the service is doing. Outside systemd the variable is unset and
every call is a no-op, so callers never need to check.
"""

from __future__ import annotations

import os
import socket
import time

ENV = "NOTIFY_SOCKET"


def _address(raw: str) -> str | None:
    if raw.startswith("@"):  # abstract namespace: a leading NUL byte instead of '@'
        return "\0" + raw[1:]
    if raw.startswith("/"):
        return raw
    return None  # vsock:... and other transports are not used by our units


def notify(*states: str) -> bool:
    """Send `states` (e.g. "READY=1") as one datagram; True when it was sent."""
    raw = os.environ.get(ENV)
    address = _address(raw) if raw else None
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto("\n".join(states).encode(), address)
    except OSError:
        return False  # systemd gone or socket not ours to write: never a reason to fail a request
    return True


def ready(status: str = "") -> bool:
    return notify("READY=1", *([f"STATUS={status}"] if status else []))


def stopping(status: str = "draining") -> bool:
    return notify("STOPPING=1", f"STATUS={status}")


def reloading() -> bool:
    # MONOTONIC_USEC lets systemd (Type=notify-reload) tell this reload from an older one.
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading configuration")


def forget() -> None:
    """Child processes must not talk to systemd in the parent's name."""
    os.environ.pop(ENV, None)
