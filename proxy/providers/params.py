"""Parameter tables: what each provider does with every canonical request field.

Every provider declares one table mapping each field of `ChatRequest` to a decision:

- `Send(wire)`: sent under the provider's name for it (the connector's translate module maps it);
- `Drop(reason)`: a sampling hint the provider lacks (`seed`, penalties): left out, documented;
- `ByProxy(reason)`: the proxy does it for the provider (`echo`, `n` fan-out, prompt lists);
- `Refuse(reason, when)`: a value that would change what the client gets and that the provider
  cannot honour; a request setting it is a 400 naming the field and the provider, checked for
  every candidate before any upstream call.

A value equal to the spec's default counts as unset, because the orq SDK sends its defaults
explicitly. tests/test_provider_params.py fails when a table has no decision for a field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from proxy.core.errors import ErrorCode, ProxyError
from proxy.core.model import REQUEST_FIELDS, ChatRequest


class Send(NamedTuple):
    wire: str


class Drop(NamedTuple):
    reason: str


class ByProxy(NamedTuple):
    reason: str


class Refuse(NamedTuple):
    reason: str
    when: Callable[[Any], bool] | None = None  # refuse only such values; None: any value set


Decision = Send | Drop | ByProxy | Refuse
ParamTable = Mapping[str, Decision]

# The spec's defaults: a field holding one of these is treated as unset by the checks.
SPEC_DEFAULTS: dict[str, Any] = {
    "echo": False,
    "frequency_penalty": 0.0,
    "presence_penalty": 0.0,
    "temperature": 1.0,
    "top_p": 1.0,
    "n": 1,
}

# Fields every surface fills and every connector handles in its own way; they are not
# parameters a client can set to something a provider cannot honour.
STRUCTURAL = ("messages", "prompt", "stream")


def is_set(request: ChatRequest, name: str) -> bool:
    value = getattr(request, name)
    if value is None or (name in SPEC_DEFAULTS and value == SPEC_DEFAULTS[name]):
        return False
    return not (name == "extras" and not value)


def undecided(table: ParamTable) -> list[str]:
    return [name for name in REQUEST_FIELDS if name not in table]


def refusals(table: ParamTable) -> list[tuple[str, Refuse]]:
    """The table's refusals alone: what a check per request has to look at."""
    return [(name, decision) for name, decision in table.items() if isinstance(decision, Refuse)]


def refuse_unsupported(table: ParamTable | list[tuple[str, Refuse]], request: ChatRequest, provider: str,
                       params: Mapping[str, str] | None = None) -> None:
    """Raise a 400 naming the first field `provider` cannot honour. `params` maps canonical
    names to the surface's JSON paths (`stop` → `stop`, an extra `logprobs` → `logprobs`)."""
    for name, decision in table.items() if isinstance(table, Mapping) else table:
        if isinstance(decision, Refuse) and is_set(request, name):
            value = getattr(request, name)
            if decision.when is None or decision.when(value):
                param = (params or {}).get(name, name)
                if name == "extras":
                    param = next(iter(value))
                raise ProxyError(
                    400,
                    f"Provider {provider!r} cannot honour `{param}`: {decision.reason}",
                    param=param,
                    code=ErrorCode.unsupported_parameter,
                )
