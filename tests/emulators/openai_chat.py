"""OpenAI's ``POST /v1/chat/completions`` answers: the ``chat.completion`` object and the
``chat.completion.chunk`` stream, built from the public API reference.

Everything a script leaves unset is derived from the request, so tests can assert exact
output:

- content: ``"Echo: " + <last user message text>``; when the conversation ends in tool
  messages, ``"Result of <tool name>: <tool content>"`` per trailing tool message (joined
  with ``"; "``), so a tool round trip is visible. ``response_format`` json_object wraps
  that text as ``{"echo": text}``; json_schema answers an instance of the schema (each
  string is that text, integers/numbers 1, booleans true, enums their first value).
- tool calls: scripted `Reply.tool_calls`, else one forced call when ``tool_choice`` is
  "required" (the first tool) or names a function; arguments are an instance of the
  tool's ``parameters`` schema, as above. Never when tools are absent or tool_choice is
  "none"; only the first with ``parallel_tool_calls: false``.
- decoding: ``max_completion_tokens`` (else ``max_tokens``) and ``stop`` cut the content,
  one word = one token; reasoning tokens are spent first. finish_reason is tool_calls,
  length or stop.
- reasoning tokens (reasoning models only, see `openai_chat_check.REASONING_MODELS`):
  `EFFORT_TOKENS` per ``reasoning_effort`` (default medium), or `Reply.reasoning_tokens`.
- usage: prompt = words of every message's text and tool-call arguments + 3 per message;
  completion = words of content (or refusal) + of tool-call arguments + reasoning tokens,
  times ``n``.

Stream: per choice a role chunk (content "" , or null when the answer has no content),
reasoning deltas, content (or refusal) deltas, per tool call one chunk with id, type,
name and ``arguments: ""`` then argument pieces, and a finish chunk with an empty delta;
choices interleave. With ``stream_options.include_usage`` every chunk carries
``usage: null`` and a last chunk has ``choices: []`` and the usage. Then ``[DONE]``.
For the faults, every ``chat.completion.chunk`` counts as one chunk.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from tests.emulators.base import dumps, generate, pieces, tokens
from tests.emulators.openai_chat_check import is_reasoning_model
from tests.emulators.openai_wire import DEFAULT_TEXT, Reply, openai_error
from tests.emulators.schema_instance import schema_instance

__all__ = ["EFFORT_TOKENS", "Answer", "answer", "completion", "sse_events", "user_text"]

EFFORT_TOKENS = {"none": 0, "minimal": 4, "low": 8, "medium": 16, "high": 32, "xhigh": 64}
_FORMAT_TAIL = 3  # per-message tokens of the chat format, as real tokenizers add


@dataclass
class Answer:
    """One choice's answer; all `n` choices are the same."""

    content: str | None
    finish_reason: str
    refusal: str | None = None
    reasoning: str | None = None
    reasoning_tokens: int = 0
    tool_calls: list[dict] = field(default_factory=list)  # wire shape


def text_of(content: Any) -> str:
    """A message content's text: the string, or its text parts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def user_text(messages: list[dict]) -> str:
    """The text of the last user message, "" if there is none."""
    users = [m for m in messages if m.get("role") == "user"]
    return text_of(users[-1].get("content")) if users else ""


def _plain_text(messages: list[dict]) -> str:
    """Tool results when the conversation ends in tool messages, else the echo."""
    names = {}
    for m in messages:
        for call in m.get("tool_calls") or []:
            names[call.get("id")] = call.get("function", {}).get("name")
    results = []
    for m in reversed(messages):
        if m.get("role") != "tool":
            break
        name = names.get(m.get("tool_call_id"), "tool")
        results.append(f"Result of {name}: {text_of(m.get('content'))}")
    if results:
        return "; ".join(reversed(results))
    return "Echo: " + user_text(messages)


def _derived_text(body: dict) -> str:
    messages = body["messages"]
    text = _plain_text(messages)
    rf = body.get("response_format") or {}
    if rf.get("type") == "json_object":
        return json.dumps({"echo": text}, ensure_ascii=False)
    if rf.get("type") == "json_schema":
        schema = rf["json_schema"].get("schema") or {"type": "object"}
        return json.dumps(schema_instance(schema, text), ensure_ascii=False)
    return text


def _call(i: int, name: str, arguments: Any, call_id: str | None) -> dict:
    args = arguments if isinstance(arguments, str) else dumps(arguments or {}).decode()
    if call_id is None:  # deterministic, so tests can script the follow-up turn
        call_id = "call_" + hashlib.sha256(f"{i}:{name}:{args}".encode()).hexdigest()[:24]
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}


def _tool_calls(reply: Reply, body: dict) -> list[dict]:
    tools = [t["function"] for t in body.get("tools") or []]
    choice = body.get("tool_choice")
    if not tools or choice == "none":
        return []
    if reply.tool_calls:
        calls = [
            _call(i, c["name"], c.get("arguments"), c.get("id"))
            for i, c in enumerate(reply.tool_calls)
        ]
    else:
        forced = None
        if choice == "required":
            forced = tools[0]
        elif isinstance(choice, dict):
            forced = next(t for t in tools if t["name"] == choice["function"]["name"])
        if forced is None:
            return []
        params = forced.get("parameters") or {"type": "object"}
        args = schema_instance(params, user_text(body["messages"]))
        calls = [_call(0, forced["name"], args, None)]
    return calls[:1] if body.get("parallel_tool_calls") is False else calls


def _reasoning_tokens(reply: Reply, body: dict, model: str) -> int:
    if reply.reasoning_tokens is not None:
        return reply.reasoning_tokens
    if reply.reasoning is not None:
        return len(tokens(reply.reasoning))
    if is_reasoning_model(model):
        return EFFORT_TOKENS.get(body.get("reasoning_effort") or "medium", 0)
    return 0


def answer(reply: Reply, body: dict, model: str) -> Answer:
    calls = _tool_calls(reply, body)
    spent = _reasoning_tokens(reply, body, model)
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    budget = None if limit is None else max(0, limit - spent)
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    out = Answer(content=None, finish_reason="stop", reasoning=reply.reasoning, reasoning_tokens=spent)
    if reply.refusal is not None:
        out.refusal = reply.refusal
    elif reply.text != DEFAULT_TEXT or not calls:
        text = reply.text if reply.text != DEFAULT_TEXT else _derived_text(body)
        out.content, why, _ = generate(text, budget, stops)
        out.finish_reason = "length" if why == "length" else "stop"
    if calls:
        out.tool_calls, out.finish_reason = calls, "tool_calls"
    if reply.finish_reason != "stop":  # a scripted finish_reason wins
        out.finish_reason = reply.finish_reason
    return out


def _usage(reply: Reply, body: dict, ans: Answer) -> dict:
    if reply.usage is not None:
        return reply.usage
    prompt = 0
    for m in body["messages"]:
        prompt += len(tokens(text_of(m.get("content")))) + _FORMAT_TAIL
        prompt += sum(len(tokens(c["function"]["arguments"])) for c in m.get("tool_calls") or [])
    n = body.get("n") or 1
    said = len(tokens(ans.content or ans.refusal or ""))
    said += sum(len(tokens(c["function"]["arguments"])) for c in ans.tool_calls)
    completion_ = n * (said + ans.reasoning_tokens)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion_,
        "total_tokens": prompt + completion_,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": n * ans.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _logprobs(toks: list[str], top: int, start: int = 0) -> list[dict]:
    """Plausible per-token log probabilities: the token itself is always the likeliest."""
    out = []
    for i, tok in enumerate(toks, start):
        lp = -round(0.05 * (1 + i % 7), 4)
        alts = [(tok, lp)] + [(f"{tok}~{j}", round(lp - j, 4)) for j in range(1, top)]
        top_list = [{"token": t, "logprob": p, "bytes": list(t.encode())} for t, p in alts[:top]]
        out.append({"token": tok, "logprob": lp, "bytes": list(tok.encode()), "top_logprobs": top_list})
    return out


def _head(model: str, kind: str) -> dict:
    return {
        "id": f"chatcmpl-{secrets.token_hex(12)}",
        "object": kind,
        "created": int(time.time()),
        "model": model,
        "service_tier": "default",
        "system_fingerprint": "fp_emulator",
    }


def completion(reply: Reply, body: dict, model: str) -> dict:
    """The non-stream ``chat.completion`` object."""
    ans = answer(reply, body, model)
    message: dict[str, Any] = {"role": "assistant", "content": ans.content, "refusal": ans.refusal}
    if ans.reasoning is not None:
        message[reply.reasoning_field] = ans.reasoning
    if ans.tool_calls:
        message["tool_calls"] = ans.tool_calls
    message["annotations"] = []
    logprobs = None
    if body.get("logprobs") is True:
        content = _logprobs(tokens(ans.content or ""), body.get("top_logprobs") or 0)
        logprobs = {"content": content, "refusal": None}
    choices = [
        {"index": i, "message": message, "logprobs": logprobs, "finish_reason": ans.finish_reason}
        for i in range(body.get("n") or 1)
    ]
    return {**_head(model, "chat.completion"), "choices": choices, "usage": _usage(reply, body, ans)}


def _groups(toks: list[str], n: int) -> list[tuple[int, list[str]]]:
    """(index of the first token, tokens) for `n` near-equal runs of whole tokens."""
    n = min(max(1, n), len(toks))
    bounds = [i * len(toks) // n for i in range(n + 1)] if n else [0]
    return [(a, toks[a:b]) for a, b in itertools.pairwise(bounds)]


def _deltas(reply: Reply, body: dict, ans: Answer) -> list[tuple[dict, dict | None, str | None]]:
    """(delta, logprobs, finish_reason) for one choice, in stream order."""
    want_lp = body.get("logprobs") is True
    role = {"role": "assistant", "content": "" if ans.content is not None else None, "refusal": None}
    out: list[tuple[dict, dict | None, str | None]] = [(role, None, None)]
    if ans.reasoning:
        out += [({reply.reasoning_field: p}, None, None) for p in pieces(ans.reasoning, reply.chunks)]
    toks = tokens(ans.content or "")
    for start, group in _groups(toks, reply.chunks):
        lp = {"content": _logprobs(group, body.get("top_logprobs") or 0, start), "refusal": None}
        out.append(({"content": "".join(group)}, lp if want_lp else None, None))
    if ans.refusal:
        out += [({"refusal": p}, None, None) for p in pieces(ans.refusal, reply.chunks)]
    for k, call in enumerate(ans.tool_calls):
        fn = call["function"]
        first = {"index": k, "id": call["id"], "type": "function", "function": {"name": fn["name"], "arguments": ""}}
        out.append(({"tool_calls": [first]}, None, None))
        for piece in pieces(fn["arguments"], reply.chunks):
            if piece:
                out.append(({"tool_calls": [{"index": k, "function": {"arguments": piece}}]}, None, None))
    out.append(({}, None, ans.finish_reason))
    return out


def sse_events(reply: Reply, body: dict, model: str) -> tuple[list[bytes], bool]:
    """The stream as wire events, and whether to abort the socket after them."""
    if reply.raw_body is not None:
        return [reply.raw_body], False
    eol = b"\r\n" if reply.crlf else b"\n"
    opts = body.get("stream_options") or {}
    with_usage = opts.get("include_usage") is True
    ans = answer(reply, body, model)
    head = _head(model, "chat.completion.chunk")
    deltas = _deltas(reply, body, ans)
    n = body.get("n") or 1
    chunks = []
    for delta, lp, fin in deltas:  # choices interleave, step by step
        for i in range(n):
            choice = {"index": i, "delta": delta, "logprobs": lp, "finish_reason": fin}
            chunks.append({**head, "choices": [choice], **({"usage": None} if with_usage else {})})
    if with_usage:
        chunks.append({**head, "choices": [], "usage": _usage(reply, body, ans)})
    out: list[bytes] = []

    def event(payload: bytes) -> None:
        # comments=True interleaves comment blocks and comment lines, as in completions.
        prefix = b""
        if reply.comments:
            prefix = b": keep-alive" + eol + (eol if len(out) % 2 == 0 else b"")
        out.append(prefix + b"data: " + payload + eol + eol)

    for sent, chunk in enumerate(chunks):
        if sent == reply.cut_after_chunks:
            return out, True
        if sent == reply.error_event_after_chunks:
            event(dumps(reply.error_body or openai_error(500)))
            return out, False
        event(dumps(chunk))
    if len(chunks) == reply.cut_after_chunks:
        return out, True
    event(b"[DONE]")
    return out, False
