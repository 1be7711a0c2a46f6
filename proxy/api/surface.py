"""A surface: one client-facing API shape, and its translation to and from the canonical model.

The request lifecycle (proxy.server.handlers) is generic over surfaces, so every surface gets
the same routing, cache, metrics and logging; a surface only says how its bodies look.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

from proxy.core.model import Delta, Result, StreamHead


class StreamRenderer(Protocol):
    def render(self, deltas: list[Delta]) -> bytes: ...

    def finish(self) -> bytes: ...


class Surface(NamedTuple):
    name: str  # the route label in metrics and logs (`completions`, `chat`)
    wire: str  # the wire format a declared pass-through stream must already be in
    render: Callable[[Result], bytes]  # a whole answer as the JSON body
    replay: Callable[[Result], list[bytes]]  # a whole answer as SSE frames (a cache hit on a stream)
    renderer: Callable[[StreamHead], StreamRenderer]  # canonical deltas → SSE frames
    defaults: Mapping[str, Any]  # the spec's defaults: an omitted field and its default key alike
