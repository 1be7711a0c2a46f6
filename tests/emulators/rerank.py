"""A reranker in Jina's wire shape (`POST /v1/rerank`, which Cohere's v2 shares in its fields):
request `{model, query, documents: [str | {text}], top_n?, return_documents?}`, answer `{model,
usage: {total_tokens}, results: [{index, relevance_score, document?: {text}}]}`, best first.

The score is deterministic: the share of the query's words that the document contains, so a test
knows which document a query should put first and by how much."""

from __future__ import annotations

import re

_WORD = re.compile(r"[\w-]+")


def relevance(query: str, document: str) -> float:
    wanted = set(_WORD.findall(query.lower()))
    have = set(_WORD.findall(document.lower()))
    return len(wanted & have) / len(wanted) if wanted else 0.0


def _error(message: str, param: str) -> tuple[int, dict]:
    return 400, {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}}


def answer(body: dict) -> tuple[int, dict]:
    model, query, documents = body.get("model"), body.get("query"), body.get("documents")
    if not isinstance(model, str) or not isinstance(query, str):
        return _error("`model` and `query` are required strings", "query")
    if not isinstance(documents, list) or not documents:
        return _error("`documents` must be a non-empty array", "documents")
    texts = [d if isinstance(d, str) else d.get("text") if isinstance(d, dict) else None for d in documents]
    if not all(isinstance(t, str) for t in texts):
        return _error("each document must be a string or {text}", "documents")
    top_n = body.get("top_n") if isinstance(body.get("top_n"), int) else len(texts)
    ranked = sorted(((i, relevance(query, t)) for i, t in enumerate(texts)), key=lambda r: -r[1])[:top_n]
    results = [{"index": i, "relevance_score": s} for i, s in ranked]
    if body.get("return_documents"):
        for result in results:
            result["document"] = {"text": texts[result["index"]]}
    tokens = sum(len(_WORD.findall(t)) for t in texts) + len(_WORD.findall(query))
    return 200, {"model": model, "usage": {"total_tokens": tokens}, "results": results}
