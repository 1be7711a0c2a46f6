"""OpenAI's `POST /v1/embeddings` for the emulator: request `{model, input: str | list[str],
encoding_format?, dimensions?}`, answer `{object: "list", data: [{object: "embedding", index,
embedding}], model, usage: {prompt_tokens, total_tokens}}` (OpenAI's API reference).

The vectors are deterministic: a hashed bag of "concepts", where a concept is a word's lower-case
form, or — through the small synonym table below — a shared meaning, so a paraphrase built from
synonyms lands close to the original while sharing no word with it (what a real embedding model
does, and what the knowledge tests need to tell vector search from keyword search).
"""

from __future__ import annotations

import hashlib
import math
import re

DIMENSIONS = 64
SYNONYMS = {
    "refund": "money-back", "refunds": "money-back", "reimbursement": "money-back", "repayment": "money-back",
    "return": "money-back", "returns": "money-back",
    "holiday": "day-off", "holidays": "day-off", "vacation": "day-off", "closed": "shut", "shut": "shut",
    "disk": "storage", "drive": "storage", "storage": "storage", "full": "no-space", "space": "no-space",
}
_WORD = re.compile(r"[\w-]+")


def embed(text: str, dimensions: int = DIMENSIONS) -> list[float]:
    vector = [0.0] * dimensions
    for word in _WORD.findall(text.lower()):
        concept = SYNONYMS.get(word, word)
        digest = hashlib.sha256(concept.encode()).digest()
        vector[int.from_bytes(digest[:4], "little") % dimensions] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def answer(body: dict) -> tuple[int, dict]:
    """(status, body) for one embeddings request."""
    model, inputs = body.get("model"), body.get("input")
    if not isinstance(model, str):
        return 400, {"error": {"message": "you must provide a model parameter", "type": "invalid_request_error",
                               "param": "model", "code": None}}
    texts = [inputs] if isinstance(inputs, str) else inputs
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts) or len(texts) > 2048:
        return 400, {"error": {"message": "'input' must be a string or an array of 1 to 2048 strings",
                               "type": "invalid_request_error", "param": "input", "code": None}}
    dims = body.get("dimensions") if isinstance(body.get("dimensions"), int) else DIMENSIONS
    data = [{"object": "embedding", "index": i, "embedding": embed(t, dims)} for i, t in enumerate(texts)]
    tokens = sum(len(_WORD.findall(t)) for t in texts)
    return 200, {"object": "list", "data": data, "model": model,
                 "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
