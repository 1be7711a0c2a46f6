"""What `type: google` (Gemini `generateContent`) does with every canonical field, and the
per-model thinking rules (docs/providers.md, "Google Gemini")."""

from __future__ import annotations

from proxy.providers.params import ByProxy, Drop, ParamTable, Refuse, Send

MAX_STOP_SEQUENCES = 5  # Gemini refuses a sixth stop sequence
MAX_CANDIDATES = 8  # candidateCount's upper bound; a larger `n` is split over several calls

# Gemini 3 takes `thinkingLevel`; earlier models only a budget.
LEVEL_MODELS = ("gemini-3",)
# Models that cannot stop thinking (budget 0 is a 400 there) and models that have no thinking at
# all (a thinkingConfig is refused there): `thinking: disabled` sends nothing to either.
ALWAYS_THINKING = ("gemini-2.5-pro", "gemini-3")
NEVER_THINKING = ("gemini-1.", "gemini-2.0-")


def model_family(model: str, prefixes: tuple[str, ...]) -> bool:
    return model.removeprefix("models/").startswith(prefixes)


PARAMS: ParamTable = {
    "messages": Send("contents / systemInstruction"),
    "prompt": ByProxy("one user content per prompt; a prompt list is served prompt by prompt"),
    "max_tokens": Send("generationConfig.maxOutputTokens"),
    "temperature": Send("generationConfig.temperature"),
    "top_p": Send("generationConfig.topP"),
    "n": Send("generationConfig.candidateCount"),  # above 8: one call per 8 candidates
    "stop": Send("generationConfig.stopSequences"),  # at most 5: more is a 400 (connector.check)
    "seed": Send("generationConfig.seed"),
    "frequency_penalty": Send("generationConfig.frequencyPenalty"),
    "presence_penalty": Send("generationConfig.presencePenalty"),
    "echo": ByProxy("the proxy puts the prompt before each choice's text"),
    "thinking": Send("generationConfig.thinkingConfig"),
    "user": Drop("generateContent has no end-user field"),
    "stream": Send(":streamGenerateContent?alt=sse"),
    "extras": Refuse("Gemini is not OpenAI-compatible: a field outside the schema has no meaning there"),
    "tools": Send("tools[0].functionDeclarations (parametersJsonSchema)"),
    "tool_choice": Send("toolConfig.functionCallingConfig"),
    "parallel_tool_calls": Drop("Gemini has no switch for parallel function calls"),
    "response_format": Send("generationConfig.responseMimeType / responseJsonSchema"),
    # Chat fields not mapped to Gemini yet: refused by name rather than silently dropped.
    "logprobs": Refuse("log probabilities are not mapped for Gemini yet", when=bool),
    "top_logprobs": Refuse("log probabilities are not mapped for Gemini yet"),
    "reasoning_effort": Send("generationConfig.thinkingConfig (proxy.providers.effort's table; `thinking` wins)"),
    "metadata": Drop("generateContent has no request metadata"),
}
