"""Request ids the proxy makes up when a client sent none: 128 random bits as 32 hex digits.

From `random`, not `os.urandom`: an id is not a secret, and urandom is a syscall on every
request. `random` is reseeded in every forked worker, so workers never share a sequence.
"""

from __future__ import annotations

from random import getrandbits


def new_request_id() -> str:
    return f"{getrandbits(128):032x}"
