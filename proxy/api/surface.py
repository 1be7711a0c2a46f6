"""A surface: one client-facing API shape, and its translation to and from the canonical model.

The request lifecycle (proxy.server.handlers) is generic over surfaces, so every surface gets
the same routing, cache, metrics and logging; a surface only says how its bodies look.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

from proxy.core.model import ChatRequest, Delta, Result, StreamHead


class StreamRenderer(Protocol):
    def render(self, deltas: list[Delta]) -> bytes: ...

    def finish(self) -> bytes: ...


class Surface(NamedTuple):
    name: str  # the route label in metrics and logs (`completions`, `chat`)
    wire: str  # the wire format a declared pass-through stream must already be in
    decode: Callable[[bytes], tuple[Any, dict[str, Any] | None]]  # body → (request, extras), or a 400
    to_canonical: Callable[[Any, dict[str, Any] | None], ChatRequest]
    render: Callable[[Result], bytes]  # a whole answer as the JSON body
    # A whole answer as SSE frames (a cache hit on a stream), and canonical deltas → SSE frames;
    # both get the surface's decoded request for its own stream options.
    replay: Callable[[Result, Any], list[bytes]]
    renderer: Callable[[StreamHead, Any], StreamRenderer]
    defaults: Mapping[str, Any]  # the spec's defaults: an omitted field and its default key alike
