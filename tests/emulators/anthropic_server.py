"""Loopback emulator of Anthropic's Messages API (``POST /v1/messages``), JSON and SSE.

Built from Anthropic's public API reference: the API key (``x-api-key``, or since API
version 2026-10-21 also ``Authorization: Bearer``; x-api-key wins when both are sent), the
``anthropic-version`` header, the request checks the API makes per version, the Message object, the streaming event
sequence and the error envelope. The answer is derived from the request (see `Reply`),
so tests can assert exact outputs.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.emulators.base import (
    Emulator,
    Fault,
    dumps,
    generate,
    json_response,
    pieces,
    sleep_polling,
    sse,
    tokens,
)

__all__ = ["AnthropicEmulator", "Reply", "anthropic_error"]

VERSIONS = ("2023-01-01", "2023-06-01", "2026-10-21")
# API version 2026-10-21 removed the sampling parameters: any value, even the default, is a 400.
SAMPLING_REMOVED_IN = "2026-10-21"
# status -> (error.type, default message), from Anthropic's list of HTTP errors.
_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request (emulated)."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low."),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "Not found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out."),
    529: ("overloaded_error", "Overloaded"),
}
# Models that refuse temperature and top_p together (Claude 4.5 and later)...
EXCLUSIVE_SAMPLING = ("claude-*-4-5*", "claude-*-4-6*", "claude-opus-4-1*", "claude-opus-4-7*")
# ...and that refuse thinking {type: enabled}, taking only adaptive thinking.
ADAPTIVE_ONLY = ("claude-opus-4-7*",)


@dataclass
class Reply(Fault):
    """One scripted answer; unset content fields are derived from the request.

    text: the answer; None derives ``"Echo: " + <last user message text>``.
    thinking: the thinking text, sent only when the request turns thinking on; None
        derives ``"Thinking about: " + <last user message text>``. Capped by
        ``budget_tokens``; its tokens count against ``max_tokens`` before the answer's.
    Both are cut by ``stop_sequences`` and ``max_tokens`` (one token = one word).
    """

    text: str | None = None
    thinking: str | None = None
    redacted_thinking: bool = False  # a redacted_thinking block before the text
    tool_use: dict | None = None  # {"name": ..., "input": {...}}: a tool_use block
    stop_reason: str | None = None  # overrides the derived one, e.g. "refusal"
    chunks: int = 3  # deltas per streamed block
    error_type: str = "overloaded_error"  # of the in-band `event: error`


def _request_id() -> str:
    return f"req_{secrets.token_hex(12)}"


def anthropic_error(status: int, message: str = "", type_: str | None = None) -> dict:
    """Anthropic's error envelope with the type the real API uses for `status`."""
    default_type, default_message = _ERRORS.get(status) or _ERRORS[500 if status >= 500 else 400]
    error = {"type": type_ or default_type, "message": message or default_message}
    return {"type": "error", "error": error, "request_id": _request_id()}


def _text(content: Any) -> str:
    """The text of a turn: its text blocks, and the text of its tool results (what the model
    reads back after calling a tool)."""
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else []
    out = []
    for block in parts:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            out.append(block.get("text", ""))
        elif block.get("type") == "tool_result":
            out.append(_text(block.get("content") or ""))
    return "".join(out)


TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def _check_tools(body: dict) -> str | None:
    """`tools` and `tool_choice` as the API validates them."""
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            return "tools: Input should be a valid list"
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                return f"tools.{i}.name: Field required"
            if not TOOL_NAME.match(tool["name"]):
                return f"tools.{i}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
            schema = tool.get("input_schema")
            if not isinstance(schema, dict):
                return f"tools.{i}.input_schema: Field required"
            if schema.get("type") != "object":
                return f"tools.{i}.input_schema.type: Input should be 'object'"
    choice = body.get("tool_choice")
    if choice is None:
        return None
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind not in ("auto", "any", "tool", "none"):
        return "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'"
    if not tools:
        return "tool_choice: may only be specified while providing tools"
    if kind == "tool" and not any(t["name"] == choice.get("name") for t in tools):
        return f"tool_choice.name: Tool '{choice.get('name')}' not found in tools"
    if kind == "none" and "disable_parallel_tool_use" in choice:
        return "tool_choice.none.disable_parallel_tool_use: Extra inputs are not permitted"
    if kind in ("any", "tool") and _thinking_on(body):
        return "Thinking may not be enabled when tool_choice forces tool use."
    return None


def _tool_blocks(content: Any, kind: str) -> list[dict]:
    if not isinstance(content, list):
        return []
    return [b for b in content if isinstance(b, dict) and b.get("type") == kind]


def _check_tool_turns(messages: list[dict]) -> str | None:
    """Each tool_use needs its tool_result in the very next (user) turn, first in it; each
    tool_result needs its tool_use in the turn before."""
    for i, msg in enumerate(messages):
        content = msg["content"]
        uses = _tool_blocks(content, "tool_use")
        results = _tool_blocks(content, "tool_result")
        if msg["role"] == "user" and uses:
            return f"messages.{i}.content: tool_use blocks may only appear in assistant messages"
        if msg["role"] == "assistant" and results:
            return f"messages.{i}.content: tool_result blocks may only appear in user messages"
        for j, use in enumerate(uses):
            if not isinstance(use.get("id"), str) or not isinstance(use.get("name"), str):
                return f"messages.{i}.content.{j}: tool_use blocks need an id and a name"
            if not isinstance(use.get("input"), dict):
                return f"messages.{i}.content.{j}.input: Input should be a valid dictionary"
        if results and isinstance(content, list) and content[: len(results)] != results:
            return f"messages.{i}: tool_result blocks must come first in the user message's content"
        previous = {u["id"] for u in _tool_blocks(messages[i - 1]["content"], "tool_use")} if i else set()
        answered = {r.get("tool_use_id") for r in results}
        if unexpected := sorted(str(a) for a in answered - previous):
            return (f"messages.{i}.content.0: unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{', '.join(unexpected)}. Each `tool_result` block must have a corresponding `tool_use` "
                    "block in the previous message.")
        following = messages[i + 1]["content"] if i + 1 < len(messages) else None
        if uses and i + 1 < len(messages):
            missing = sorted({u["id"] for u in uses} - {r.get("tool_use_id") for r in _tool_blocks(following, "tool_result")})
            if missing:
                return (f"messages.{i + 1}: `tool_use` ids were found without `tool_result` blocks immediately "
                        f"after: {', '.join(missing)}. Each `tool_use` block must have a corresponding "
                        "`tool_result` block in the next message.")
    return None


def _thinking_on(body: dict) -> bool:
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")


def _check_messages(messages: Any) -> str | None:
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    expected = "user"
    for i, msg in enumerate(messages):
        role = msg.get("role") if isinstance(msg, dict) else None
        if role == "system":
            return (
                'messages: Unexpected role "system". The Messages API accepts a top-level '
                "`system` parameter, not \"system\" as an input message role."
            )
        if role not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        if role != expected:
            return f"messages: roles must alternate between \"user\" and \"assistant\"; messages.{i} is {role}"
        content = msg.get("content")
        blocks_ok = isinstance(content, list) and content and all(
            isinstance(b, dict) and isinstance(b.get("type"), str) for b in content
        )
        if not isinstance(content, str) and not blocks_ok:
            return f"messages.{i}.content: Input should be a valid string or a list of content blocks"
        expected = "assistant" if role == "user" else "user"
    return None


def _number(body: dict, name: str, low: float, high: float) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        return f"{name}: Input should be a number between {low:g} and {high:g}"
    return None


def _check_thinking(body: dict, model: str, adaptive_only: tuple[str, ...]) -> str | None:
    thinking = body.get("thinking")
    if thinking is None:
        return None
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind not in ("enabled", "adaptive", "disabled"):
        return "thinking.type: Input should be 'enabled', 'adaptive' or 'disabled'"
    if kind == "enabled":
        if any(fnmatch.fnmatch(model, p) for p in adaptive_only):
            return 'thinking.type: "enabled" is not supported for this model. Use "adaptive" instead.'
        budget = thinking.get("budget_tokens")
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1024:
            return "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
        if budget >= body["max_tokens"]:
            return "`max_tokens` must be greater than `thinking.budget_tokens`."
    if kind == "disabled":
        return None
    if body.get("temperature") not in (None, 1, 1.0):
        return "`temperature` may only be set to 1 when thinking is enabled."
    top_p = body.get("top_p")
    if top_p is not None and not (isinstance(top_p, int | float) and 0.95 <= top_p <= 1):
        return "`top_p` must be greater than or equal to 0.95 or unset when thinking is enabled."
    if body.get("top_k") is not None:
        return "`top_k` cannot be set when thinking is enabled."
    return None


def check_request(
    body: dict, version: str, exclusive: tuple[str, ...], adaptive_only: tuple[str, ...]
) -> str | None:
    """The message of the 400 Anthropic would answer for `body` under `version`, or None."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return "model: Field required"
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        return "max_tokens: Field required"
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        return "max_tokens: Input should be greater than or equal to 1"
    if (problem := _check_messages(body.get("messages"))) is not None:
        return problem
    if (problem := _check_tool_turns(body["messages"])) is not None:
        return problem
    if (problem := _check_tools(body)) is not None:
        return problem
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        return "system: Input should be a valid string or a list of text blocks"
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            return "stop_sequences: Input should be a valid list of strings"
        if any(not s.strip() for s in stops):
            return "stop_sequences: each stop sequence must contain non-whitespace characters"
    if version >= SAMPLING_REMOVED_IN:
        for name in ("temperature", "top_p", "top_k"):
            if name in body:
                return f"{name}: Extra inputs are not permitted"
    for name, high in (("temperature", 1.0), ("top_p", 1.0)):
        if (problem := _number(body, name, 0.0, high)) is not None:
            return problem
    top_k = body.get("top_k")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0):
        return "top_k: Input should be a non-negative integer"
    both = body.get("temperature") is not None and body.get("top_p") is not None
    if both and any(fnmatch.fnmatch(model, p) for p in exclusive):
        return "`temperature` and `top_p` cannot both be specified for this model. Please use only one."
    metadata = body.get("metadata")
    if metadata is not None and not (isinstance(metadata, dict) and isinstance(metadata.get("user_id", ""), str)):
        return "metadata.user_id: Input should be a valid string"
    if "stream" in body and not isinstance(body["stream"], bool):
        return "stream: Input should be a valid boolean"
    return _check_thinking(body, model, adaptive_only)


def _blocks(reply: Reply, body: dict) -> tuple[list[dict], str, str | None, int]:
    """The Message's content blocks, stop_reason, stop_sequence and output tokens."""
    user = [m for m in body["messages"] if m["role"] == "user"]
    last = _text(user[-1]["content"]) if user else ""
    stops = body.get("stop_sequences") or []
    left = body["max_tokens"]
    blocks: list[dict] = []
    if _thinking_on(body):
        budget = body["thinking"].get("budget_tokens", left)
        thought = reply.thinking if reply.thinking is not None else f"Thinking about: {last}"
        thought, _, _ = generate(thought, min(budget, left), [])
        signature = base64.b64encode(hashlib.sha256(thought.encode()).digest()).decode()
        blocks.append({"type": "thinking", "thinking": thought, "signature": signature})
        left -= len(tokens(thought))
    if reply.redacted_thinking:
        blocks.append({"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"})
    answer = reply.text if reply.text is not None else f"Echo: {last}"
    answer, why, matched = generate(answer, max(0, left), stops)
    if answer:
        blocks.append({"type": "text", "text": answer})
    stop_reason = {"end": "end_turn", "length": "max_tokens"}.get(why, why)
    if reply.tool_use is not None and why == "end":
        tool = {"type": "tool_use", "id": f"toolu_{secrets.token_hex(12)}", **reply.tool_use}
        blocks.append({"input": {}, **tool})
        stop_reason = "tool_use"
    spent = sum(len(tokens(b.get("thinking", "") + b.get("text", ""))) for b in blocks)
    spent += sum(len(tokens(json.dumps(b["input"]))) for b in blocks if b["type"] == "tool_use")
    return blocks, reply.stop_reason or stop_reason, matched, spent


def _input_tokens(body: dict) -> int:
    texts = [_text(m["content"]) for m in body["messages"]] + [_text(body.get("system") or "")]
    return max(1, sum(len(tokens(t)) for t in texts))


def _usage(body: dict, output_tokens: int) -> dict:
    return {
        "input_tokens": _input_tokens(body),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
    }


def message(reply: Reply, body: dict) -> dict:
    """The non-streamed Message object."""
    blocks, stop_reason, matched, spent = _blocks(reply, body)
    return {
        "id": f"msg_{secrets.token_hex(12)}",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": blocks,
        "stop_reason": stop_reason,
        "stop_sequence": matched,
        "usage": _usage(body, spent),
    }


def _deltas(block: dict, n: int) -> tuple[dict, list[dict]]:
    """A block's content_block_start payload and its deltas, per Anthropic's stream format."""
    kind = block["type"]
    if kind == "thinking":
        deltas = [{"type": "thinking_delta", "thinking": p} for p in pieces(block["thinking"], n) if p]
        deltas.append({"type": "signature_delta", "signature": block["signature"]})
        return {"type": "thinking", "thinking": "", "signature": ""}, deltas
    if kind == "text":
        return {"type": "text", "text": ""}, [
            {"type": "text_delta", "text": p} for p in pieces(block["text"], n) if p
        ]
    if kind == "tool_use":
        raw = json.dumps(block["input"])
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces(raw, n) if p]
        return {**block, "input": {}}, deltas
    return block, []  # redacted_thinking arrives whole in its start event


def stream_events(reply: Reply, body: dict) -> tuple[list[bytes], bool]:
    """The SSE stream as wire events, and whether to abort the socket after them."""
    if reply.raw_body is not None:
        return [reply.raw_body], False
    msg = message(reply, body)
    out: list[bytes] = []

    def event(payload: dict) -> None:
        out.append(sse(dumps(payload), payload["type"]))

    start = {**msg, "content": [], "stop_reason": None, "stop_sequence": None}
    start["usage"] = {**msg["usage"], "output_tokens": 1}
    event({"type": "message_start", "message": start})
    sent = 0  # content_block_delta events so far
    for index, block in enumerate(msg["content"]):
        first, deltas = _deltas(block, reply.chunks)
        event({"type": "content_block_start", "index": index, "content_block": first})
        if index == 0:
            event({"type": "ping"})
        for delta in deltas:
            if sent == reply.cut_after_chunks:
                return out, True
            if sent == reply.error_event_after_chunks:
                event(reply.error_body or anthropic_error(529, type_=reply.error_type))
                return out, False  # the connection closes without message_stop
            event({"type": "content_block_delta", "index": index, "delta": delta})
            sent += 1
        event({"type": "content_block_stop", "index": index})
    if sent == reply.cut_after_chunks:
        return out, True
    if sent == reply.error_event_after_chunks:  # after all content, before message_delta
        event(reply.error_body or anthropic_error(529, type_=reply.error_type))
        return out, False
    stop = {"stop_reason": msg["stop_reason"], "stop_sequence": msg["stop_sequence"]}
    event({"type": "message_delta", "delta": stop, "usage": msg["usage"]})  # cumulative
    event({"type": "message_stop"})
    return out, False


class AnthropicEmulator(Emulator[Reply]):
    """Scriptable fake Anthropic server; see `Reply` for what can be scripted.

    `exclusive_sampling` and `adaptive_only` are model-name globs for the rules that
    newer models add (temperature with top_p refused; thinking ``enabled`` refused).
    """

    reply_type = Reply
    name = "anthropic"

    def __init__(
        self,
        api_key: str | None = None,
        exclusive_sampling: tuple[str, ...] = EXCLUSIVE_SAMPLING,
        adaptive_only: tuple[str, ...] = ADAPTIVE_ONLY,
    ) -> None:
        super().__init__(api_key)
        self.exclusive_sampling = exclusive_sampling
        self.adaptive_only = adaptive_only

    @property
    def base_url(self) -> str:
        """What a client configures; it appends ``/v1/messages``."""
        return self.origin

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_route("*", "/{tail:.*}", self._not_found)

    async def _not_found(self, request: web.Request) -> web.Response:
        await self.record(request)
        return _json(404, anthropic_error(404, f"Not found: {request.method} {request.path}"))

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await self.record(request)
        # Auth and headers come before the script so they do not consume a scripted reply.
        if self.api_key is not None and _api_key(request) != self.api_key:
            return _json(401, anthropic_error(401))
        version = request.headers.get("anthropic-version")
        if version is None:
            return _json(400, anthropic_error(400, "anthropic-version: header is required"))
        if version not in VERSIONS:
            return _json(400, anthropic_error(400, f"anthropic-version: invalid version {version}"))
        if body is None:
            return _json(400, anthropic_error(400, "There was an error parsing the body of your request."))
        problem = check_request(body, version, self.exclusive_sampling, self.adaptive_only)
        if problem is not None:
            return _json(400, anthropic_error(400, problem))
        reply = self.next_reply(body["model"])
        return await self.guarded(self._answer(request, reply, body))

    async def _answer(self, request: web.Request, reply: Reply, body: dict) -> web.StreamResponse:
        await sleep_polling(request, reply.delay_s)
        if reply.status >= 400 and reply.raw_body is None:
            headers = {"retry-after": "1"} if reply.status == 429 else {}
            error = reply.error_body or anthropic_error(reply.status)
            return _json(reply.status, error, {**headers, **reply.headers})
        if body.get("stream") is True:
            events, cut = stream_events(reply, body)
            return await self.send_stream(request, reply, events, cut, {"request-id": _request_id()})
        payload = message(reply, body) if reply.raw_body is None else reply.raw_body
        return _json(reply.status, payload, reply.headers)


def _api_key(request: web.Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key is not None:
        return key
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token if scheme.lower() == "bearer" and token else None


def _json(status: int, obj: Any, extra: dict[str, str] | None = None) -> web.Response:
    return json_response(status, obj, {"request-id": _request_id(), **(extra or {})})
