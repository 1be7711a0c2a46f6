"""Scores and filters, the same for every backend (README, "Knowledge bases", "Scores").

- vector: cosine similarity between the query's and the chunk's embeddings (-1..1).
- keyword: BM25 (Okapi, as SQLite's FTS5 computes it) squashed into 0..1 as `s / (s + 1)`, so a
  threshold means the same on every corpus size; more matching terms, rarer terms, higher score.
- hybrid: reciprocal rank fusion of the two lists (`1 / (60 + rank)` summed), divided by its
  maximum (first in both lists), so 1.0 means "best by both measures".
`threshold` applies to each list's own score before fusion, so a hybrid search keeps only
chunks that pass it by keyword or by vector.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: numpy costs every worker ~16 MB, knowledge bases or not
    import numpy as np

from proxy.api.filters import Condition, Filter
from proxy.knowledge.records import Metadata

RRF_K = 60


def keyword_score(bm25: float) -> float:
    bm25 = max(bm25, 0.0)
    return bm25 / (bm25 + 1.0)


def to_blob(vector: Sequence[float]) -> bytes:
    import numpy as np

    return np.asarray(vector, dtype="<f4").tobytes()


def from_blob(blob: bytes) -> np.ndarray:
    import numpy as np

    return np.frombuffer(blob, dtype="<f4")


def cosine(matrix: np.ndarray, row_norms: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Cosine of each row of `matrix` (whose norms are given) with `query`; a zero vector scores 0."""
    import numpy as np

    norms = row_norms * float(np.linalg.norm(query))
    dots = matrix @ query
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)


def fuse(*ranked: list[str]) -> list[tuple[str, float]]:
    """Reciprocal rank fusion of ranked id lists, scores normalised to 0..1, best first."""
    scores: dict[str, float] = {}
    for ids in ranked:
        for rank, chunk_id in enumerate(ids, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank)
    best = len(ranked) / (RRF_K + 1)
    return sorted(((cid, s / best) for cid, s in scores.items()), key=lambda item: -item[1])


def _kind(value: object) -> type:
    # bool before number: True must not equal 1 in a metadata filter.
    if isinstance(value, bool):
        return bool
    if isinstance(value, (int, float)):
        return float
    return str


def _same(a: object, b: object) -> bool:
    return _kind(a) is _kind(b) and a == b


def _holds(condition: Condition, metadata: Metadata) -> bool:
    present = condition.field in metadata
    value = metadata.get(condition.field)
    op, wanted = condition.op, condition.value
    if op == "exists":
        return present is wanted
    if op == "eq":
        return present and _same(value, wanted)
    if op == "ne":  # as MongoDB: a chunk without the field is "not equal"
        return not (present and _same(value, wanted))
    if op == "in":
        return present and any(_same(value, w) for w in wanted)  # type: ignore[union-attr]
    if op == "nin":
        return not (present and any(_same(value, w) for w in wanted))  # type: ignore[union-attr]
    if not present or _kind(value) is not float:
        return False  # gt/gte/lt/lte compare numbers only
    number, bound = float(value), float(wanted)  # type: ignore[arg-type]
    return {"gt": number > bound, "gte": number >= bound, "lt": number < bound, "lte": number <= bound}[op]


def matches(flt: Filter | None, metadata: Metadata) -> bool:
    if flt is None:
        return True
    results = (all(_holds(c, metadata) for c in clause.conditions) for clause in flt.clauses)
    return all(results) if flt.combine == "and" else any(results)
