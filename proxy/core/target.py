"""One candidate model: `provider/model` split, as connectors, stages and metrics need it."""

from __future__ import annotations

from typing import NamedTuple


class Target(NamedTuple):
    provider: str  # a key of the config's `providers:`
    model: str  # the upstream model id (may contain '/')

    @property
    def label(self) -> str:
        return f"{self.provider}/{self.model}"
