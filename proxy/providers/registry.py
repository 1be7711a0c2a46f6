"""Provider types: the one place a new connector is registered.

Kept free of imports of the connectors themselves so the config can validate `type` without
pulling in aiohttp client code; `connector_class` imports lazily.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from proxy.providers.base import Connector


class ProviderType(NamedTuple):
    module: str  # module holding a `Connector` subclass named `CONNECTOR`
    default_base_url: str | None  # None: the proxy runs the server itself and there is no base_url
    options: frozenset[str] = frozenset()  # provider keys that only this type takes
    requires: tuple[str, ...] = ()  # modules it imports that an optional extra brings
    extra: str = ""  # that extra: `pip install 'switchyard[<extra>]'`


PROVIDER_TYPES: dict[str, ProviderType] = {
    "openai": ProviderType("proxy.providers.openai.connector", "https://api.openai.com/v1",
                           options=frozenset({"chat_endpoint"})),
    "anthropic": ProviderType("proxy.providers.anthropic.connector", "https://api.anthropic.com",
                              options=frozenset({"anthropic_version"})),
    "google": ProviderType("proxy.providers.google.connector", "https://generativelanguage.googleapis.com"),
    "llamacpp": ProviderType(
        "proxy.providers.llamacpp.connector", None,
        options=frozenset({"model_path", "model_package", "threads", "context", "parallel"}),
        requires=("xllamacpp",), extra="local",
    ),
}

TYPE_OPTIONS: frozenset[str] = frozenset().union(*(kind.options for kind in PROVIDER_TYPES.values()))


def connector_class(type_name: str) -> type[Connector]:
    module = importlib.import_module(PROVIDER_TYPES[type_name].module)
    return module.CONNECTOR  # type: ignore[no-any-return]
