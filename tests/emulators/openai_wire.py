"""What both OpenAI emulator endpoints share: the scripted `Reply` and the error envelope.

Split from `openai_server` so the chat module can use them without an import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.emulators.base import Fault

__all__ = ["DEFAULT_TEXT", "BadRequest", "Reply", "openai_error"]

DEFAULT_TEXT = "Hello from the emulator"
_INVALID = "invalid_request_error"
# status -> (type, code, message) as the real API answers; other 4xx/5xx use 400/500.
_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: (_INVALID, None, "Invalid request (emulated)."),
    401: (_INVALID, "invalid_api_key", "Incorrect API key provided."),
    404: (_INVALID, "model_not_found", "The model `{model}` does not exist."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for {model}."),
    500: ("server_error", None, "The server had an error processing your request."),
    503: ("server_error", None, "The server is overloaded or not ready yet."),
}


@dataclass
class Reply(Fault):
    """One scripted answer; the stream-only fields are ignored for non-stream calls.

    Completions answer `text` as is. Chat derives what is left at its default from the
    request (see `tests.emulators.openai_chat`): `text` at DEFAULT_TEXT means "derive",
    `finish_reason` at "stop" means "derive" (stop / length / tool_calls).
    """

    text: str = DEFAULT_TEXT
    chunks: int = 4
    crlf: bool = False
    comments: bool = False
    finish_reason: str = "stop"
    prompt_tokens: int = 5  # completions only; chat counts words
    completion_tokens: int = 7  # completions only
    # ---- chat only ----
    # [{"name": ..., "arguments": dict | str, "id"?: ...}]: answered when the request has
    # tools and tool_choice is not "none"; parallel_tool_calls=false keeps the first.
    tool_calls: list[dict] | None = None
    refusal: str | None = None  # answer with this refusal instead of content
    reasoning: str | None = None  # reasoning text, sent under `reasoning_field`
    reasoning_field: str = "reasoning_content"
    reasoning_tokens: int | None = None  # None derives it from reasoning_effort
    usage: dict | None = None  # replaces the derived chat usage object


class BadRequest(Exception):
    """A request the real API refuses with 400; carries its error fields."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message, self.param, self.code = message, param, code

    def body(self) -> dict:
        err = {"message": self.message, "type": _INVALID, "param": self.param, "code": self.code}
        return {"error": err}


def openai_error(status: int, model: str | None = None, message: str = "") -> dict:
    """OpenAI's error envelope with the type and code the real API uses for `status`."""
    type_, code, default = _ERRORS.get(status) or _ERRORS[500 if status >= 500 else 400]
    text = message or default.format(model=model)
    return {"error": {"message": text, "type": type_, "param": None, "code": code}}
