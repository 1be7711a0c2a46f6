"""What the knowledge store keeps: knowledge bases, datasources and chunks.

Ids sort by creation time (a millisecond clock then random bits, like orq's ULIDs), so list
cursors (`starting_after`, `ending_before`) are plain comparisons on the id.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any

import msgspec

Metadata = dict[str, str | float | bool]


_last = 0


def new_id(prefix: str) -> str:
    """Milliseconds then a sequence (so ids made in one millisecond still sort in creation
    order within a process), then random bits (so processes do not collide)."""
    global _last
    _last = max(int(time.time() * 1000) << 12, _last + 1)
    return f"{prefix}_{_last:015x}{os.urandom(6).hex()}"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Settings(msgspec.Struct, omit_defaults=True):
    """A knowledge base's retrieval defaults (orq's `retrieval_settings`)."""

    retrieval_type: str = "hybrid_search"
    top_k: int = 5
    threshold: float = 0.0
    rerank_config: dict[str, Any] | None = None  # stored and echoed; rerank is not built yet
    agentic_rag_config: dict[str, Any] | None = None


class KnowledgeBase(msgspec.Struct):
    id: str
    key: str
    owner: str  # the API key name that created it; "" for a config-declared one
    embedding_model: str | None
    settings: Settings
    created: str
    updated: str
    description: str | None = None
    path: str = "Default"
    declared: bool = False  # from the config: never dropped
    keys: list[str] | None = None  # declared only: the key names that may use it (None: every key)

    def visible_to(self, tenant: str) -> bool:
        if self.declared:
            return self.keys is None or tenant in self.keys
        return self.owner == tenant


class Datasource(msgspec.Struct):
    id: str
    knowledge_id: str
    display_name: str
    created: str
    updated: str
    description: str | None = None
    metadata: dict[str, Any] | None = None
    chunks_count: int = 0


class Chunk(msgspec.Struct):
    id: str
    knowledge_id: str
    datasource_id: str
    text: str
    metadata: Metadata
    vector: bytes | None  # float32, little-endian; None when the base has no embedding model
    created: str
    updated: str
    enabled: bool = True
    status: str = "completed"


class Page(msgspec.Struct):
    """One page of a list, oldest first, and whether more lie beyond it."""

    items: list[Any]
    has_more: bool
