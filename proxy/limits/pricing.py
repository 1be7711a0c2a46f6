"""Turns usage into cost with the config's `pricing` table: the first `provider/model` glob
that matches the model which served the answer. No match costs 0 (and is not a budget spend)."""

from __future__ import annotations

import re
from fnmatch import translate

from proxy.config import Price
from proxy.core.model import Usage


class Pricing:
    def __init__(self, table: dict[str, Price]) -> None:
        self.table = [(re.compile(translate(glob)), price) for glob, price in table.items()]
        self._found: dict[str, Price | None] = {}

    def price(self, model: str) -> Price | None:
        if model in self._found:
            return self._found[model]
        found = next((price for pattern, price in self.table if pattern.match(model)), None)
        if len(self._found) < 4096:  # bounded: served models come from the config's providers
            self._found[model] = found
        return found

    def cost(self, model: str, usage: Usage) -> float:
        """Completion tokens include reasoning tokens (OpenAI's arithmetic), priced as output."""
        price = self.price(model)
        if price is None:
            return 0.0
        return (usage.prompt_tokens * price.input_per_1m + usage.completion_tokens * price.output_per_1m) / 1e6
