"""What `type: anthropic` does with every canonical field, and the rules that depend on the
model, the API version or another field (docs/providers.md has the table).

`PARAMS` decides each field once. `RULES` are the declared exceptions Anthropic's API makes:
a rule either drops a field (the provider lacks it there) or refuses the request before any
upstream call with a 400 naming the field and the provider — never an upstream 400 nor a crash.
"""

from __future__ import annotations

from collections.abc import Callable
from fnmatch import fnmatch
from typing import Any, Literal, NamedTuple

from proxy.core.model import ChatRequest
from proxy.providers.params import ByProxy, Drop, ParamTable, Refuse, Send, is_set

DEFAULT_VERSION = "2023-06-01"
# Anthropic requires `max_tokens`. Omitted in a legacy completion it is the completions spec's own
# default, 16 (the cache keys an omitted `max_tokens` and `16` alike, so both must mean the same);
# omitted in a chat request (no spec default: "as long as the model likes") it is 4096.
COMPLETION_MAX_TOKENS = 16
CHAT_MAX_TOKENS = 4096
MIN_THINKING_BUDGET = 1024
# API version from which temperature, top_p and top_k are gone from the Messages API.
SAMPLING_REMOVED_IN = "2026-10-21"
# Models that refuse temperature and top_p together (Claude Opus 4.1, the 4.5 family and later).
EXCLUSIVE_SAMPLING_MODELS = ("claude-opus-4-1*", "claude-*-4-5*", "claude-*-4-6*", "claude-opus-4-7*")
# Models that refuse thinking {type: enabled}: `enabled` is sent as adaptive thinking there.
ADAPTIVE_ONLY_MODELS = ("claude-opus-4-7*",)
# Extras that are sampling hints Anthropic lacks: dropped like `seed`; any other extra is refused.
DROPPED_EXTRAS = frozenset({"logit_bias"})


def _other_extras(extras: dict[str, Any]) -> bool:
    return any(name not in DROPPED_EXTRAS for name in extras)


PARAMS: ParamTable = {
    "messages": Send("messages (system and developer turns → system)"),
    "prompt": ByProxy("each prompt of a list is its own call, sent as one user message"),
    "max_tokens": Send("max_tokens"),
    "temperature": Send("temperature"),
    "top_p": Send("top_p"),
    "n": ByProxy("Anthropic returns one message per call: n calls, run concurrently"),
    "stop": Send("stop_sequences"),
    "seed": Drop("Anthropic has no seed"),
    "frequency_penalty": Drop("Anthropic has no frequency penalty"),
    "presence_penalty": Drop("Anthropic has no presence penalty"),
    "echo": ByProxy("the proxy puts the prompt before each choice's text"),
    "thinking": Send("thinking"),
    "user": Send("metadata.user_id"),
    "stream": Send("stream"),
    "extras": Refuse("fields outside the schema are OpenAI's; Anthropic's Messages API does not take them",
                     when=_other_extras),
    "tools": Send("tools (parameters → input_schema; `strict` is not sent)"),
    "tool_choice": Send("tool_choice (none, auto, required → any, a function → tool)"),
    "parallel_tool_calls": Send("tool_choice.disable_parallel_tool_use"),
    # The 2023-06-01 Messages API has no JSON mode; emulating one with a forced tool would clash
    # with the client's own tools and with thinking, so it is refused by name (docs/providers.md).
    "response_format": Refuse("Anthropic's Messages API has no JSON mode; ask for JSON in the prompt, "
                              "or define a tool with that schema and require it", when=lambda f: f.type != "text"),
    "logprobs": Refuse("Anthropic returns no log probabilities", when=bool),
    "top_logprobs": Refuse("Anthropic returns no log probabilities"),
    "reasoning_effort": Send("thinking (proxy.providers.effort's table; `thinking` wins; unset max_tokens grows by the budget)"),
    "metadata": Drop("Anthropic's metadata takes only user_id, which `user` fills"),
}


def max_tokens_of(request: ChatRequest) -> int:
    """What is sent as `max_tokens`: the request's, else the default for its kind (above)."""
    if request.max_tokens is not None:
        return request.max_tokens
    return COMPLETION_MAX_TOKENS if request.prompt is not None else CHAT_MAX_TOKENS


def thinking_on(request: ChatRequest) -> bool:
    return request.thinking is not None and request.thinking.type != "disabled"


def adaptive_only(model: str) -> bool:
    return any(fnmatch(model, pattern) for pattern in ADAPTIVE_ONLY_MODELS)


class Rule(NamedTuple):
    field: str  # the request field it acts on, as the 400 names it
    action: Literal["drop", "refuse"]
    reason: str
    applies: Callable[[ChatRequest, str, str], bool]  # (request, model, API version)


def _sampling_removed(request: ChatRequest, model: str, version: str) -> bool:
    return version >= SAMPLING_REMOVED_IN


def _budget(request: ChatRequest) -> int | None:
    thinking = request.thinking
    return thinking.budget_tokens if thinking is not None and thinking.type == "enabled" else None


RULES: tuple[Rule, ...] = (
    # Drops first: a field the API version lacks is not sent, so no rule below can refuse it.
    Rule("temperature", "drop", f"removed from the Messages API in version {SAMPLING_REMOVED_IN}",
         _sampling_removed),
    Rule("top_p", "drop", f"removed from the Messages API in version {SAMPLING_REMOVED_IN}", _sampling_removed),
    Rule("temperature", "refuse", "Anthropic's temperature ranges from 0 to 1",
         lambda r, m, v: r.temperature is not None and r.temperature > 1),
    Rule("top_p", "refuse", "this model takes `temperature` or `top_p`, not both",
         lambda r, m, v: is_set(r, "temperature") and any(fnmatch(m, p) for p in EXCLUSIVE_SAMPLING_MODELS)),
    Rule("temperature", "refuse", "with thinking on, Anthropic takes no temperature other than 1",
         lambda r, m, v: thinking_on(r)),
    Rule("top_p", "refuse", "with thinking on, Anthropic takes a top_p of 0.95 or more only",
         lambda r, m, v: thinking_on(r) and r.top_p is not None and r.top_p < 0.95),
    Rule("tool_choice", "refuse", "with thinking on, Anthropic takes no tool_choice that forces a tool "
         "(only `auto` or `none`)",
         lambda r, m, v: thinking_on(r) and r.tool_choice is not None and r.tool_choice.type in ("required", "function")),
    Rule("thinking.budget_tokens", "refuse",
         f"must be at least {MIN_THINKING_BUDGET} and less than `max_tokens` (when omitted: "
         f"{COMPLETION_MAX_TOKENS}, the spec's default, for a completion; {CHAT_MAX_TOKENS} for a chat)",
         lambda r, m, v: (budget := _budget(r)) is not None
         and not MIN_THINKING_BUDGET <= budget < max_tokens_of(r)),
)


def applies(rule: Rule, request: ChatRequest, model: str, version: str) -> bool:
    """Whether `rule` acts on this request: its field is set (a spec default counts as unset)
    and its condition holds."""
    name = rule.field.partition(".")[0]
    return is_set(request, name) and rule.applies(request, model, version)


def dropped(request: ChatRequest, model: str, version: str) -> frozenset[str]:
    """The fields the drop rules leave out of this request."""
    return frozenset(rule.field for rule in RULES if rule.action == "drop" and applies(rule, request, model, version))


def refusal(request: ChatRequest, model: str, version: str) -> Rule | None:
    """The first refuse rule this request breaks, after the drops took their fields away."""
    gone = dropped(request, model, version)
    for rule in RULES:
        if rule.action == "refuse" and rule.field not in gone and applies(rule, request, model, version):
            return rule
    return None
