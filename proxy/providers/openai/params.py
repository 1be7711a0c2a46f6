"""What `type: openai` (legacy `/v1/completions`) does with every canonical field
(docs/providers.md has the table for every provider)."""

from __future__ import annotations

from proxy.core.model import Thinking
from proxy.providers.params import ParamTable, Refuse, Send


def _thinking_on(value: Thinking) -> bool:
    return value.type != "disabled"


PARAMS: ParamTable = {
    "messages": Send("prompt"),  # completions carry the raw prompt; a chat surface uses /chat/completions
    "prompt": Send("prompt"),
    "max_tokens": Send("max_tokens"),
    "temperature": Send("temperature"),
    "top_p": Send("top_p"),
    "n": Send("n"),
    "stop": Send("stop"),
    "seed": Send("seed"),
    "frequency_penalty": Send("frequency_penalty"),
    "presence_penalty": Send("presence_penalty"),
    "echo": Send("echo"),
    "thinking": Refuse("legacy completions have no thinking setting; use a provider with thinking",
                       when=_thinking_on),
    "user": Send("user"),
    "stream": Send("stream"),
    "extras": Send("(as named)"),  # passed through unchanged: OpenAI-compatible servers take many
}
