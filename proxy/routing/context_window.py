"""Is this failure "the prompt does not fit this model's context window"?

Such a 400 would not fail the same way on a larger-window model, so the fallback stage moves on
to the next candidate instead of answering it (README, "Routing policy"). Each provider says it
its own way; connectors keep the provider's machine-readable code and message:

* OpenAI and OpenAI-compatible servers: `code: context_length_exceeded`
  ("This model's maximum context length is … tokens").
* llama.cpp's server: `type: exceed_context_size_error` ("the request exceeds the available
  context size").
* Anthropic: `invalid_request_error` with the message "prompt is too long: N tokens > M maximum".
* Gemini: `INVALID_ARGUMENT` with the message "The input token count (N) exceeds the maximum
  number of tokens allowed (M)".
"""

from __future__ import annotations

import re

from proxy.core.errors import UpstreamError

CONTEXT_CODES = frozenset({"context_length_exceeded", "exceed_context_size_error"})
_MESSAGES = re.compile(
    r"maximum context length|exceeds? the available context size|prompt is too long"
    r"|input token count.{0,40}exceeds the maximum",
    re.IGNORECASE,
)


def is_context_window(err: UpstreamError) -> bool:
    if err.status not in (400, 413, 422):
        return False
    if err.code in CONTEXT_CODES:
        return True
    return _MESSAGES.search(err.message[:2000]) is not None
