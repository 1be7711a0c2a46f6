"""What `type: openai` does with every canonical field (docs/providers.md has the table for
every provider). Completions go to `/completions` with the raw prompt; chat goes to
`/chat/completions`, or — with `chat_endpoint: false`, for servers that only have the legacy
endpoint — to `/completions` with the messages as one prompt, where chat-only fields are refused."""

from __future__ import annotations

from proxy.core.model import Thinking
from proxy.providers.params import ParamTable, Refuse, Send


def _thinking_on(value: Thinking) -> bool:
    return value.type != "disabled"


PARAMS: ParamTable = {
    "messages": Send("messages"),  # completions carry the raw prompt instead
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
    "tools": Send("tools"),
    "tool_choice": Send("tool_choice"),
    "parallel_tool_calls": Send("parallel_tool_calls"),
    "response_format": Send("response_format"),
    "logprobs": Send("logprobs"),
    "top_logprobs": Send("top_logprobs"),
    "reasoning_effort": Send("reasoning_effort"),
    "metadata": Send("metadata"),
    "extras": Send("(as named)"),  # passed through unchanged: OpenAI-compatible servers take many
}

# A chat sent to the legacy endpoint (`chat_endpoint: false`) has no place for these.
LEGACY_CHAT: ParamTable = {
    "tools": Refuse("this provider is configured with `chat_endpoint: false`: legacy completions have no tools"),
    "tool_choice": Refuse("legacy completions have no tools"),
    "response_format": Refuse("legacy completions have no response format"),
    "reasoning_effort": Refuse("legacy completions have no reasoning effort"),
}
