"""The prompt registry: a folder of YAML files, one stored prompt each, with versions.

```yaml
# prompts/support-reply.yaml
id: support-reply                  # what `orq.prompt.id` names (defaults to the file name)
versions:
  - version: 1
    template: "Customer {{customer_name}} asks: {{prompt}}\\nAnswer:"
    params: {max_tokens: 200, temperature: 0.2}   # defaults; request fields override them
```
`version: latest` (the only one the spec allows) is the highest version number.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec
import yaml
from msgspec import Meta

from proxy.api.request import GenerationParams
from proxy.config import ConfigError


class PromptVersion(msgspec.Struct, forbid_unknown_fields=True):
    version: Annotated[int, Meta(ge=1)]
    template: str
    params: GenerationParams = msgspec.field(default_factory=GenerationParams)  # type: ignore[valid-type]


class PromptFile(msgspec.Struct, forbid_unknown_fields=True):
    versions: Annotated[list[PromptVersion], Meta(min_length=1)]
    id: str | None = None


class StoredPrompt(msgspec.Struct, frozen=True):
    id: str
    version: int
    template: str
    params: dict[str, object]  # only the parameters the file sets


class PromptRegistry:
    def __init__(self, prompts: dict[str, StoredPrompt] | None = None) -> None:
        self.prompts = prompts or {}

    def latest(self, prompt_id: str) -> StoredPrompt | None:
        return self.prompts.get(prompt_id)

    @classmethod
    def load(cls, folder: str | None) -> PromptRegistry:
        if folder is None:
            return cls()
        root = Path(folder)
        if not root.is_dir():
            raise ConfigError(f"prompts.dir: {root} is not a directory")
        prompts: dict[str, StoredPrompt] = {}
        for path in sorted([*root.glob("*.yaml"), *root.glob("*.yml")]):
            try:
                raw = yaml.safe_load(path.read_text(encoding="utf-8"))
                parsed = msgspec.convert(raw, PromptFile, strict=False)
            except (yaml.YAMLError, OSError) as err:
                raise ConfigError(f"{path}: cannot read prompt: {err}") from None
            except msgspec.ValidationError as err:
                raise ConfigError(f"{path}: {err}") from None
            newest = max(parsed.versions, key=lambda v: v.version)
            prompt_id = parsed.id or path.stem
            if prompt_id in prompts:
                raise ConfigError(f"{path}: prompt id {prompt_id!r} is defined twice")
            params = msgspec.to_builtins(newest.params)
            prompts[prompt_id] = StoredPrompt(prompt_id, newest.version, newest.template, params)
        return cls(prompts)
