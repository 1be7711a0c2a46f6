"""Hypothesis strategies for JSON bodies, built from an OpenAPI request schema: values the schema
allows, and the same values with one field replaced by anything JSON can say.

A small interpreter for the keywords the router spec uses ($ref, allOf, anyOf/oneOf, enum, type,
properties/required, additionalProperties, items/minItems, minimum/maximum); hypothesis-jsonschema
does not run on current hypothesis releases.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

# Values at the edges that have broken proxies: integer width limits, control characters,
# a lone surrogate, a header injection.
EDGES = st.sampled_from([2**31, 2**63 - 1, 2**63, 2**64, 2**64 + 1, -(2**63) - 1, 1e308, -0.0, "a\nb", "\u0000",
                         "\r\nSet-Cookie: x", "\ud800", "\u2028", "\x85", "{{a}}", "emu/a\nb"])
JSON: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
    | EDGES,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


class SchemaStrategies:
    def __init__(self, root: dict[str, Any], overrides: dict[str, st.SearchStrategy[Any]] | None = None) -> None:
        self.root = root
        self.overrides = overrides or {}  # by property name, e.g. `model` → names that route somewhere

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            node: Any = self.root
            for part in schema["$ref"].removeprefix("#/").split("/"):
                node = node[part]
            schema = node
        return schema

    def for_schema(self, schema: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
        schema = self.resolve(schema)
        if "allOf" in schema:
            merged: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
            for part in schema["allOf"]:
                part = self.resolve(part)
                merged["properties"].update(part.get("properties", {}))
                merged["required"] += part.get("required", [])
            return self.for_schema(merged, depth)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return st.one_of([self.for_schema(s, depth + 1) for s in schema[key]])
        if "enum" in schema:
            return st.sampled_from(schema["enum"])
        kind = schema.get("type")
        if kind == "object" or "properties" in schema:
            return self._object(schema, depth)
        if kind == "array":
            low = schema.get("minItems", 0)
            return st.lists(self.for_schema(schema.get("items", {}), depth + 1), min_size=low,
                            max_size=max(low, min(schema.get("maxItems", 4), 4)))
        if kind == "string":
            return st.text(max_size=24) | EDGES.filter(lambda v: isinstance(v, str))
        if kind == "integer":  # no bounds in the spec: let it go past int64 too
            low, high = schema.get("minimum"), schema.get("maximum")
            edges = EDGES.filter(lambda v: isinstance(v, int) and (low is None or v >= low)
                                 and (high is None or v <= high))
            return st.integers(low, high) | edges if low is None or high is None else st.integers(low, high)
        if kind == "number":
            low, high = schema.get("minimum"), schema.get("maximum")
            return st.floats(low, high, allow_nan=False, allow_infinity=False) | st.integers(
                None if low is None else int(low) + (low % 1 > 0), None if high is None else int(high))
        if kind == "boolean":
            return st.booleans()
        return JSON

    def _object(self, schema: dict[str, Any], depth: int) -> st.SearchStrategy[dict[str, Any]]:
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))

        def field(name: str, sub: dict[str, Any]) -> st.SearchStrategy[Any]:
            return self.overrides[name] if name in self.overrides else self.for_schema(sub, depth + 1)

        fixed = {name: field(name, sub) for name, sub in properties.items() if name in required}
        optional = {} if depth > 6 else {name: field(name, sub) for name, sub in properties.items()
                                         if name not in required}
        return st.fixed_dictionaries(fixed, optional=optional)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place inside a JSON value that could hold something else."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, sub in value.items():
            found += paths(sub, (*prefix, key))
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            found += paths(sub, (*prefix, i))
    return found


def replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: replaced(value[head], rest, new)}
    copy = list(value)
    copy[head] = replaced(copy[head], rest, new)
    return copy
