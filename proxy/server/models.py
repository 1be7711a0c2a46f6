"""`GET /v1/models` (and `/v2/router/models`): the models a key may use — the aliases and each
provider's `models:` list, filtered by the key's allowlist — in OpenAI's list shape."""

from __future__ import annotations

import msgspec

from proxy.config import Config
from proxy.pipeline.auth import ApiKey


class ModelEntry(msgspec.Struct):
    id: str
    object: str
    created: int
    owned_by: str


class ModelList(msgspec.Struct):
    object: str
    data: list[ModelEntry]


_encode = msgspec.json.Encoder().encode


def model_list(config: Config, key: ApiKey) -> bytes:
    entries: dict[str, ModelEntry] = {}
    for alias, target in sorted(config.aliases.items()):
        if key.may_use(target):  # an alias is listed when what it routes to may be used
            entries[alias] = ModelEntry(alias, "model", 0, target.split("/", 1)[0])
    for provider_name, provider in config.providers.items():
        for model in provider.models:
            name = f"{provider_name}/{model}"
            if key.may_use(name):
                entries.setdefault(name, ModelEntry(name, "model", 0, provider_name))
    return _encode(ModelList("list", list(entries.values())))
