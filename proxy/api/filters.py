"""The knowledge-base metadata filter grammar (`orq.knowledge_bases[].filter_by`), validated.

Grammar (from the spec): either `{field: {op: value}, ...}` or `{"and": [ {field: {op: value}}, ... ]}`
or `{"or": [...]}`. `eq`/`ne` take a string, number or boolean; `gt`/`gte`/`lt`/`lte` a number;
`in`/`nin` a list of those; `exists` a boolean. msgspec cannot decode a union of two object shapes,
so the raw mapping is checked here and turned into a typed tree, every error naming its path.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from proxy.core.errors import bad_request

Scalar = str | float | bool


class Condition(msgspec.Struct, frozen=True):
    field: str
    op: str
    value: Scalar | list[Scalar]


class Clause(msgspec.Struct, frozen=True):
    """All conditions must hold (the implicit AND of one `{field: {op: value}}` mapping)."""

    conditions: tuple[Condition, ...]


class Filter(msgspec.Struct, frozen=True):
    combine: Literal["and", "or"]
    clauses: tuple[Clause, ...]


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, bool, int, float))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_scalar_list(value: Any) -> bool:
    return isinstance(value, list) and all(_is_scalar(v) for v in value)


# op → (check, what the error says it expects)
_OPERATORS: dict[str, tuple[Any, str]] = {
    "eq": (_is_scalar, "a string, number or boolean"),
    "ne": (_is_scalar, "a string, number or boolean"),
    "gt": (_is_number, "a number"),
    "gte": (_is_number, "a number"),
    "lt": (_is_number, "a number"),
    "lte": (_is_number, "a number"),
    "in": (_check_scalar_list, "a list of strings, numbers or booleans"),
    "nin": (_check_scalar_list, "a list of strings, numbers or booleans"),
    "exists": (lambda v: isinstance(v, bool), "a boolean"),
}


def _condition(field: str, spec: Any, path: str) -> Condition:
    if not isinstance(spec, dict) or len(spec) != 1:
        raise bad_request(f"`{path}` must be an object with exactly one operator of {sorted(_OPERATORS)}", path)
    ((op, value),) = spec.items()
    if op not in _OPERATORS:
        raise bad_request(f"`{path}` has unknown operator `{op}`; expected one of {sorted(_OPERATORS)}", f"{path}.{op}")
    check, expected = _OPERATORS[op]
    if not check(value):
        raise bad_request(f"`{path}.{op}` must be {expected}", f"{path}.{op}")
    return Condition(field, op, value)


def _clause(mapping: Any, path: str) -> Clause:
    if not isinstance(mapping, dict) or not mapping:
        raise bad_request(f"`{path}` must be a non-empty object of field conditions", path)
    return Clause(tuple(_condition(field, spec, f"{path}.{field}") for field, spec in mapping.items()))


def parse_filter(raw: dict[str, Any], path: str) -> Filter:
    """Validate a raw `filter_by` mapping; raises a 400 ProxyError naming the offending path."""
    for combine in ("and", "or"):
        if combine in raw:
            if len(raw) != 1:
                raise bad_request(f"`{path}.{combine}` cannot be mixed with other keys", path)
            items = raw[combine]
            if not isinstance(items, list) or not items:
                raise bad_request(f"`{path}.{combine}` must be a non-empty array", f"{path}.{combine}")
            clauses = tuple(_clause(item, f"{path}.{combine}[{i}]") for i, item in enumerate(items))
            return Filter(combine, clauses)  # type: ignore[arg-type]
    return Filter("and", (_clause(raw, path),))


__all__ = ["Clause", "Condition", "Filter", "parse_filter"]
