"""A value that satisfies a simple schema, built deterministically: what an emulated model
"answers" when a request asks for structured output or a function call. Reads JSON Schema and
Gemini's OpenAPI subset (whose type names are capitalised)."""

from __future__ import annotations

from typing import Any


def schema_instance(schema: Any, text: str) -> Any:
    """`text` wherever a string goes; the first option of an enum, anyOf or oneOf."""
    if not isinstance(schema, dict):
        return text
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return schema_instance(schema[key][0], text)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    kind = str(kind).lower()  # Gemini's Schema spells types in capitals
    if kind == "object":
        return {k: schema_instance(v, text) for k, v in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [schema_instance(schema["items"], text)] if "items" in schema else []
    return {"integer": 1, "number": 1, "boolean": True, "null": None}.get(kind, text)
