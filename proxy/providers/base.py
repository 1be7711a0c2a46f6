"""What every provider connector is.

A connector takes the canonical request, a target and a small context, and returns a canonical
result or an opened stream; it never sees the pipeline's per-request state (docs/architecture.md).
Each connector class declares its parameter table (proxy.providers.params).
"""

from __future__ import annotations

from typing import Any, ClassVar

from proxy.config import ProviderConfig
from proxy.core.model import ChatRequest, Result
from proxy.core.stream import CallContext, UpstreamStream
from proxy.core.target import Target
from proxy.providers.params import ParamTable, refusals, refuse_unsupported


class Connector:
    """One provider. Subclasses map the canonical request to the provider's wire format and back."""

    PARAMS: ClassVar[ParamTable] = {}

    def __init__(self, name: str, config: ProviderConfig) -> None:
        self.name = name
        self.config = config
        self._refusals = refusals(self.PARAMS)  # once: the per-request check looks only at these

    async def start(self) -> None:
        """Open pooled connections; called inside the running event loop."""

    async def close(self) -> None:
        """Release pooled connections."""

    def check(self, request: ChatRequest, target: Target) -> None:
        """Refuse, before any upstream call, what this provider cannot honour (a 400)."""
        refuse_unsupported(self._refusals, request, self.name)

    async def complete(self, request: ChatRequest, target: Target, ctx: CallContext) -> Result:
        raise NotImplementedError

    async def stream(self, request: ChatRequest, target: Target, ctx: CallContext) -> UpstreamStream[Any]:
        raise NotImplementedError
