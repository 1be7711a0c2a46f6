"""Loopback emulator of Google's Gemini API: ``generateContent`` and ``streamGenerateContent``.

Built from Google's public API reference: ``POST /v1beta/models/{model}:generateContent``
(``/v1`` too)
and ``:streamGenerateContent`` (SSE with ``?alt=sse``, else one JSON array), the API key
in ``x-goog-api-key`` or ``?key=``, the request checks the API makes, the
GenerateContentResponse shape and Google's error envelope. The answer is derived from the
request (see `Reply`), so tests can assert exact outputs.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
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

__all__ = ["GoogleEmulator", "Reply", "google_error"]

# status -> (google.rpc status, default message) as the Gemini API answers.
_ERRORS: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
    403: ("PERMISSION_DENIED", "The caller does not have permission"),
    404: ("NOT_FOUND", "Requested entity was not found."),
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    500: ("INTERNAL", "An internal error has occurred. Please retry or report the issue."),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
}
_GEN_FIELDS = {
    "maxOutputTokens", "temperature", "topP", "topK", "stopSequences", "candidateCount", "seed",
    "presencePenalty", "frequencyPenalty", "thinkingConfig", "responseMimeType", "responseSchema",
    "responseLogprobs", "logprobs", "responseModalities",
}  # fmt: skip
_LEVELS = ("minimal", "low", "medium", "high")
# Models that take thinkingLevel (Gemini 3) and models that cannot stop thinking (budget 0).
LEVEL_MODELS = ("gemini-3*",)
THINKING_ONLY = ("gemini-2.5-pro*", "gemini-3*")


@dataclass
class Reply(Fault):
    """One scripted answer; unset content fields are derived from the request.

    text: the answer; None derives ``"Echo: " + <last user text>``, and candidate i > 0
        gets ``" (i)"`` appended so candidates are told apart. Cut by ``stopSequences``
        and by ``maxOutputTokens`` less the thought tokens (one token = one word).
    thinking: the thought text; None derives ``"Thinking about: " + <last user text>``.
        The model thinks when thinkingConfig has a non-zero thinkingBudget or a
        thinkingLevel; thought parts (``thought: true``) are sent only with
        includeThoughts, and a part holding only ``thoughtSignature`` follows the answer.
    """

    text: str | None = None
    thinking: str | None = None
    finish_reason: str | None = None  # overrides STOP / MAX_TOKENS, e.g. "SAFETY"
    block_reason: str | None = None  # promptFeedback.blockReason: no candidates at all
    chunks: int = 3  # stream pieces per part
    error_code: int = 500  # of the in-band error object after error_event_after_chunks


def google_error(status: int, message: str = "") -> dict:
    """Google's error envelope with the google.rpc status the API uses for `status`."""
    name, default = _ERRORS.get(status) or _ERRORS[500 if status >= 500 else 400]
    return {"error": {"code": status, "message": message or default, "status": name}}


def _camel(key: str) -> str:
    # The API's JSON mapping accepts proto field names (snake_case) as well as camelCase.
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), key)


def _norm(obj: Any) -> dict:
    return {_camel(k): v for k, v in obj.items()} if isinstance(obj, dict) else {}


def _text(content: Any) -> str:
    parts = content.get("parts") if isinstance(content, dict) else None
    parts = parts if isinstance(parts, list) else []
    return "".join(p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _check_contents(body: dict) -> str | None:
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    for i, content in enumerate(contents):
        content = _norm(content)
        if content.get("role", "user") not in ("user", "model"):
            return f"Please use a valid role: user, model. (contents[{i}].role)"
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts or not all(isinstance(p, dict) for p in parts):
            return f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
    system = body.get("systemInstruction", body.get("system_instruction"))
    if system is not None and not (isinstance(system, dict) and isinstance(system.get("parts"), list)):
        return "* GenerateContentRequest.system_instruction.parts: parts must be a list"
    return None


def _check_thinking(cfg: dict, model: str) -> str | None:
    tc = _norm(cfg.get("thinkingConfig"))
    budget, level = tc.get("thinkingBudget"), tc.get("thinkingLevel")
    if budget is not None and level is not None:
        return "You can only set only one of thinking budget and thinking level."
    if budget is not None and (not _is_int(budget) or budget < -1):
        return f"The thinking budget ({budget}) is invalid."
    if budget == 0 and any(fnmatch.fnmatch(model, p) for p in THINKING_ONLY):
        return "Budget 0 is invalid. This model only works in thinking mode."
    if level is not None:
        if not isinstance(level, str) or level.lower() not in _LEVELS:
            return f"Invalid value at 'generation_config.thinking_config.thinking_level', \"{level}\""
        if not any(fnmatch.fnmatch(model, p) for p in LEVEL_MODELS):
            return "Thinking level is not supported for this model."
    if "includeThoughts" in tc and not isinstance(tc["includeThoughts"], bool):
        return "Invalid value at 'generation_config.thinking_config.include_thoughts' (TYPE_BOOL)"
    return None


def check_request(body: dict, model: str) -> str | None:
    """The message of the 400 INVALID_ARGUMENT Google would answer, or None if valid."""
    if (problem := _check_contents(body)) is not None:
        return problem
    cfg = _norm(body.get("generationConfig", body.get("generation_config", {})))
    for key in cfg:
        if key not in _GEN_FIELDS:
            return f"Invalid JSON payload received. Unknown name \"{key}\" at 'generation_config': Cannot find field."
    rules = (
        ("maxOutputTokens", lambda v: _is_int(v) and v >= 1),
        ("temperature", lambda v: _is_num(v) and 0 <= v <= 2),
        ("topP", lambda v: _is_num(v) and 0 <= v <= 1),
        ("topK", lambda v: _is_int(v) and v >= 1),
        ("candidateCount", lambda v: _is_int(v) and 1 <= v <= 8),
        ("seed", _is_int),
        ("presencePenalty", lambda v: _is_num(v) and -2 <= v < 2),
        ("frequencyPenalty", lambda v: _is_num(v) and -2 <= v < 2),
    )
    for name, ok in rules:
        if name in cfg and not ok(cfg[name]):
            return f"Invalid value at 'generation_config.{name}' ({cfg[name]!r})"
    stops = cfg.get("stopSequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            return "Invalid value at 'generation_config.stop_sequences'"
        if len(stops) > 5:
            return "* GenerateContentRequest.generation_config.stop_sequences: at most 5 stop sequences are allowed"
    return _check_thinking(cfg, model)


def _signature(text: str) -> str:
    # Base64 of opaque bytes, as the API's `bytes` field is encoded in JSON.
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def _candidates(reply: Reply, body: dict) -> tuple[list[list[dict]], list[str], int, int]:
    """Per candidate: its parts in stream order (one piece each); its finishReason;
    then candidates' and thoughts' token counts."""
    cfg = _norm(body.get("generationConfig", body.get("generation_config", {})))
    tc = _norm(cfg.get("thinkingConfig"))
    users = [c for c in body["contents"] if _norm(c).get("role", "user") == "user"]
    last = _text(users[-1]) if users else ""
    limit = cfg.get("maxOutputTokens")
    budget = tc.get("thinkingBudget")
    thinks = tc.get("thinkingLevel") is not None or budget not in (None, 0)
    seqs: list[list[dict]] = []
    reasons: list[str] = []
    out_tokens = thought_tokens = 0
    for i in range(cfg.get("candidateCount") or 1):
        steps: list[dict] = []
        thought = ""
        if thinks:
            source = reply.thinking if reply.thinking is not None else f"Thinking about: {last}"
            cap = [b for b in (budget, limit) if isinstance(b, int) and b > 0]
            thought, _, _ = generate(source, min(cap) if cap else None, [])
            thought_tokens += len(tokens(thought))
            if tc.get("includeThoughts") is True:
                steps += [{"text": p, "thought": True} for p in pieces(thought, reply.chunks) if p]
        source = reply.text if reply.text is not None else f"Echo: {last}" + (f" ({i})" if i else "")
        left = None if limit is None else max(0, limit - len(tokens(thought)))
        answer, why, _ = generate(source, left, cfg.get("stopSequences") or [])
        out_tokens += len(tokens(answer))
        steps += [{"text": p} for p in pieces(answer, reply.chunks) if p]
        if thinks:
            steps.append({"thoughtSignature": _signature(thought + str(i))})
        seqs.append(steps)
        reasons.append(reply.finish_reason or ("MAX_TOKENS" if why == "length" else "STOP"))
    return seqs, reasons, out_tokens, thought_tokens


def _usage(body: dict, out_tokens: int, thought_tokens: int) -> dict:
    texts = [_text(c) for c in body["contents"]]
    texts.append(_text(body.get("systemInstruction", body.get("system_instruction"))))
    prompt = max(1, sum(len(tokens(t)) for t in texts))
    usage = {"promptTokenCount": prompt, "candidatesTokenCount": out_tokens}
    if thought_tokens:
        usage["thoughtsTokenCount"] = thought_tokens
    usage["totalTokenCount"] = prompt + out_tokens + thought_tokens
    return usage


def _merge(steps: list[dict]) -> list[dict]:
    """Join consecutive stream pieces of the same kind into whole parts."""
    parts: list[dict] = []
    for step in steps:
        if parts and "text" in step and "text" in parts[-1] and step.get("thought") == parts[-1].get("thought"):
            parts[-1] = {**parts[-1], "text": parts[-1]["text"] + step["text"]}
        else:
            parts.append(dict(step))
    return parts


def _candidate(parts: list[dict], index: int, reason: str | None) -> dict:
    cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}} if parts else {}
    if reason is not None:
        cand["finishReason"] = reason
    cand["index"] = index
    return cand


def responses(reply: Reply, body: dict, model: str, stream: bool) -> list[dict]:
    """The GenerateContentResponse objects: one, or one per stream chunk."""
    head = {"modelVersion": model, "responseId": secrets.token_urlsafe(16)}
    if reply.block_reason is not None:  # blocked prompt: feedback, no candidates
        feedback = {"blockReason": reply.block_reason}
        return [{"promptFeedback": feedback, "usageMetadata": _usage(body, 0, 0), **head}]
    seqs, reasons, out_tokens, thought_tokens = _candidates(reply, body)
    if not stream:
        cands = [_candidate(_merge(s), i, reasons[i]) for i, s in enumerate(seqs)]
        return [{"candidates": cands, "usageMetadata": _usage(body, out_tokens, thought_tokens), **head}]
    chunks: list[dict] = []
    said = [""] * len(seqs)  # answer text streamed so far, per candidate
    for k in range(max(1, *(len(s) for s in seqs))):
        cands = []
        for i, steps in enumerate(seqs):
            if k < len(steps) or (k == 0 and not steps):
                part = [steps[k]] if k < len(steps) else []
                said[i] += "".join(p.get("text", "") for p in part if not p.get("thought"))
                cands.append(_candidate(part, i, reasons[i] if k >= len(steps) - 1 else None))
        # Usage so far on every chunk: the last one holds the totals.
        usage = _usage(body, sum(len(tokens(t)) for t in said), thought_tokens)
        chunks.append({"candidates": cands, "usageMetadata": usage, **head})
    return chunks


def stream_events(reply: Reply, body: dict, model: str, sse_mode: bool) -> tuple[list[bytes], bool]:
    """The stream's wire pieces (SSE, or one JSON array), and whether to abort after them."""
    if reply.raw_body is not None:
        return [reply.raw_body], False
    out: list[bytes] = []

    def emit(obj: dict) -> None:
        if sse_mode:
            out.append(sse(dumps(obj), eol=b"\r\n"))
        else:
            out.append((b"[" if not out else b",\r\n") + dumps(obj))

    for n, chunk in enumerate(responses(reply, body, model, stream=True)):
        if n == reply.cut_after_chunks:
            return out, True
        if n == reply.error_event_after_chunks:
            emit(reply.error_body or google_error(reply.error_code))
            break
        emit(chunk)
    else:
        if reply.cut_after_chunks == len(out):
            return out, True
        if reply.error_event_after_chunks == len(out):  # after every chunk
            emit(reply.error_body or google_error(reply.error_code))
    if not sse_mode:
        out.append(b"]" if out else b"[]")
    return out, False


class GoogleEmulator(Emulator[Reply]):
    """Scriptable fake Gemini API server; see `Reply` for what can be scripted."""

    reply_type = Reply
    name = "google"

    @property
    def base_url(self) -> str:
        """What a client configures; it appends ``/v1beta/models/{model}:{method}``."""
        return self.origin

    def add_routes(self, app: web.Application) -> None:
        # Google serves the same methods under v1 and v1beta; the path is recorded.
        app.router.add_post(r"/{version:v1|v1beta}/models/{target:[^/]+}", self._models)
        app.router.add_route("*", "/{tail:.*}", self._not_found)

    async def _not_found(self, request: web.Request) -> web.Response:
        await self.record(request)
        return json_response(404, google_error(404, f"Method not found: {request.path}"))

    async def _models(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["target"].rpartition(":")
        body = await self.record(request, model=model or None)
        if method not in ("generateContent", "streamGenerateContent") or not model:
            return json_response(404, google_error(404, f"Method not found: {request.path}"))
        # Auth comes before the script so a refusal does not consume a scripted reply.
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if self.api_key is not None and key is None:
            message = "Method doesn't allow unregistered callers. Please use API Key or other form of API consumer identity to call this API."
            return json_response(403, google_error(403, message))
        if self.api_key is not None and key != self.api_key:
            return json_response(400, google_error(400, "API key not valid. Please pass a valid API key."))
        if body is None:
            return json_response(400, google_error(400, "Invalid JSON payload received."))
        problem = check_request(body, model)
        if problem is not None:
            return json_response(400, google_error(400, problem))
        reply = self.next_reply(model)
        stream = method == "streamGenerateContent"
        return await self.guarded(self._answer(request, reply, body, model, stream))

    async def _answer(
        self, request: web.Request, reply: Reply, body: dict, model: str, stream: bool
    ) -> web.StreamResponse:
        await sleep_polling(request, reply.delay_s)
        if reply.status >= 400 and reply.raw_body is None:
            error = reply.error_body or google_error(reply.status)
            return json_response(reply.status, error, reply.headers)
        if stream:
            sse_mode = request.query.get("alt") == "sse"
            events, cut = stream_events(reply, body, model, sse_mode)
            kind = "text/event-stream" if sse_mode else "application/json"
            return await self.send_stream(request, reply, events, cut, content_type=kind)
        payload = reply.raw_body if reply.raw_body is not None else responses(reply, body, model, False)[0]
        return json_response(reply.status, payload, reply.headers)
