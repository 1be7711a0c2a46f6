"""The bottom layer: errors, targets, SSE framing and the canonical chat model.

Imports nothing else of `proxy`, so every other layer can build on it without cycles
(docs/architecture.md).
"""
