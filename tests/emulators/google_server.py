"""Loopback emulator of Google's Gemini API: ``generateContent`` and ``streamGenerateContent``.

Built from Google's public API reference: ``POST /v1beta/models/{model}:generateContent``
(``/v1`` too)
and ``:streamGenerateContent`` (SSE with ``?alt=sse``, else one JSON array), the API key
in ``x-goog-api-key`` or ``?key=``, the request checks the API makes, the
GenerateContentResponse shape and Google's error envelope; function calling (``tools`` of
``functionDeclarations``, ``toolConfig.functionCallingConfig``, ``functionCall`` parts in model
turns and ``functionResponse`` parts in user turns) and JSON output (``responseMimeType``
with ``responseSchema`` or ``responseJsonSchema``). The answer is derived from the request
(see `Reply`), so tests can assert exact outputs.
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
from tests.emulators.schema_instance import schema_instance

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
    "responseLogprobs", "logprobs", "responseModalities", "responseJsonSchema",
}  # fmt: skip
_MIME_TYPES = ("text/plain", "application/json", "text/x.enum")
_MODES = ("AUTO", "ANY", "NONE", "VALIDATED")
_FUNCTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$")
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
        A conversation ending in ``functionResponse`` parts derives
        ``"Result of <name>: <response.result>"`` per part (joined with ``"; "``) instead.
        With ``responseMimeType: application/json`` the text is wrapped as ``{"echo": text}``,
        or with a schema is an instance of it (strings are the text, numbers 1, booleans
        true, enums their first value). No text is derived when the model calls functions.
    function_calls: scripted ``{"name", "args"[, "id"]}`` calls (only when the request has
        tools and the mode is not NONE); None derives one call when the mode is ANY: the
        first allowed (else declared) function, its args an instance of its schema.
    thinking: the thought text; None derives ``"Thinking about: " + <last user text>``.
        The model thinks when thinkingConfig has a non-zero thinkingBudget or a
        thinkingLevel; thought parts (``thought: true``) are sent only with
        includeThoughts, and a part holding only ``thoughtSignature`` follows the answer;
        when the model calls functions the first ``functionCall`` part carries it instead
        (Gemini 3 models always sign it, and refuse a current turn that lost it).
    """

    text: str | None = None
    function_calls: list[dict] | None = None
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
        for j, part in enumerate(parts):
            if (problem := _check_part(_norm(part), content.get("role", "user"), f"contents[{i}].parts[{j}]")):
                return problem
    system = body.get("systemInstruction", body.get("system_instruction"))
    if system is not None and not (isinstance(system, dict) and isinstance(system.get("parts"), list)):
        return "* GenerateContentRequest.system_instruction.parts: parts must be a list"
    return None


def _check_part(part: dict, role: str, where: str) -> str | None:
    data = [k for k in ("text", "functionCall", "functionResponse", "inlineData", "fileData") if k in part]
    if len(data) != 1:
        return f"* GenerateContentRequest.{where}.data: required oneof field 'data' must have one initialized field"
    kind = data[0]
    if kind == "functionCall":
        call = _norm(part[kind])
        if role != "model":
            return f"Please ensure that function call turn comes immediately after a user turn or after a function response turn. ({where})"
        if not isinstance(call.get("name"), str) or not isinstance(call.get("args", {}), dict):
            return f"Invalid value at '{where}.function_call'"
    if kind == "functionResponse":
        resp = _norm(part[kind])
        if role == "model":
            return f"Please ensure that function response turn comes immediately after a function call turn. ({where})"
        if not isinstance(resp.get("name"), str) or not isinstance(resp.get("response"), dict):
            return f"Invalid value at '{where}.function_response'"
    if kind == "text" and not isinstance(part["text"], str):
        return f"Invalid value at '{where}.text'"
    return None


def declarations(body: dict) -> list[dict]:
    """Every function declared in ``tools``, normalised to camelCase keys."""
    out = []
    for tool in body.get("tools") or []:
        tool = _norm(tool)
        out += [_norm(d) for d in tool.get("functionDeclarations") or [] if isinstance(d, dict)]
    return out


def _calling_config(body: dict) -> dict:
    return _norm(_norm(body.get("toolConfig", body.get("tool_config"))).get("functionCallingConfig"))


def _check_tools(body: dict) -> str | None:
    tools = body.get("tools")
    if tools is not None and not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
        return "Invalid JSON payload received. Invalid value at 'tools'"
    for tool in tools or []:
        decls = _norm(tool).get("functionDeclarations", [])
        if not isinstance(decls, list) or not all(isinstance(d, dict) for d in decls):
            return "Invalid value at 'tools[0].function_declarations'"
    names = []
    for i, decl in enumerate(declarations(body)):
        name = decl.get("name")
        if not isinstance(name, str) or not _FUNCTION_NAME.match(name):
            return f"* GenerateContentRequest.tools[0].function_declarations[{i}].name: Invalid function name."
        if "parameters" in decl and "parametersJsonSchema" in decl:
            return (f"* GenerateContentRequest.tools[0].function_declarations[{i}]: parameters and "
                    "parameters_json_schema are mutually exclusive")
        if not isinstance(decl.get("parametersJsonSchema", {}), dict):
            return f"Invalid value at 'tools[0].function_declarations[{i}].parameters_json_schema'"
        names.append(name)
    cfg = _calling_config(body)
    mode = cfg.get("mode", "AUTO")
    if mode not in _MODES:
        return f"Invalid value at 'tool_config.function_calling_config.mode' ({mode!r})"
    allowed = cfg.get("allowedFunctionNames")
    if allowed is not None:
        if mode not in ("ANY", "VALIDATED"):
            return ("* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: "
                    "allowed_function_names should only be set when the Mode is ANY.")
        if not isinstance(allowed, list) or any(a not in names for a in allowed):
            return "* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: unknown function"
    return None


def _check_output(cfg: dict) -> str | None:
    mime = cfg.get("responseMimeType")
    if mime is not None and mime not in _MIME_TYPES:
        return f"* GenerateContentRequest.generation_config.response_mime_type: allowed mimetypes are {', '.join(_MIME_TYPES)}."
    if "responseSchema" in cfg and "responseJsonSchema" in cfg:
        return "* GenerateContentRequest.generation_config: response_schema and response_json_schema are mutually exclusive"
    if ("responseSchema" in cfg or "responseJsonSchema" in cfg) and mime not in ("application/json", "text/x.enum"):
        return ("* GenerateContentRequest.generation_config.response_mime_type: response_mime_type must be "
                "application/json when a response schema is set")
    if not isinstance(cfg.get("responseJsonSchema", {}), dict):
        return "Invalid value at 'generation_config.response_json_schema'"
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


def _check_signatures(body: dict, model: str) -> str | None:
    """Gemini 3 refuses a current turn (what follows the last user text) whose model steps
    lost the thoughtSignature of their first function call."""
    if not any(fnmatch.fnmatch(model, p) for p in THINKING_ONLY if p.startswith("gemini-3")):
        return None
    contents = [_norm(c) for c in body["contents"]]
    start = max((i for i, c in enumerate(contents) if c.get("role", "user") == "user" and _text(c)), default=0)
    for i, content in enumerate(contents[start:], start):
        calls = [_norm(p) for p in content.get("parts") or [] if "functionCall" in _norm(p)]
        if content.get("role") == "model" and calls and not calls[0].get("thoughtSignature"):
            return (f"Function call is missing a thought_signature in functionCall parts. "
                    f"(contents[{i}])")
    return None


def check_request(body: dict, model: str) -> str | None:
    """The message of the 400 INVALID_ARGUMENT Google would answer, or None if valid."""
    if (problem := _check_contents(body) or _check_tools(body) or _check_signatures(body, model)) is not None:
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
    return _check_output(cfg) or _check_thinking(cfg, model)


def _signature(text: str) -> str:
    # Base64 of opaque bytes, as the API's `bytes` field is encoded in JSON.
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def _last_user_text(body: dict) -> str:
    users = [c for c in body["contents"] if _norm(c).get("role", "user") == "user" and _text(c)]
    return _text(users[-1]) if users else ""


def _function_results(body: dict) -> list[str]:
    """``Result of <name>: <result>`` per functionResponse part of the last content."""
    last = _norm(body["contents"][-1])
    results = []
    for part in last.get("parts") or []:
        resp = _norm(part).get("functionResponse")
        if isinstance(resp, dict):
            value = _norm(resp).get("response", {})
            value = value.get("result", value) if isinstance(value, dict) else value
            results.append(f"Result of {resp.get('name')}: {value if isinstance(value, str) else dumps(value).decode()}")
    return results


def function_calls(reply: Reply, body: dict) -> list[dict]:
    """The ``functionCall`` objects of each candidate's answer."""
    decls = declarations(body)
    cfg = _calling_config(body)
    mode = cfg.get("mode", "AUTO")
    if not decls or mode == "NONE":
        return []
    if reply.function_calls is not None:
        return [{k: v for k, v in c.items() if k in ("id", "name", "args")} for c in reply.function_calls]
    if mode != "ANY":
        return []
    allowed = cfg.get("allowedFunctionNames") or [d["name"] for d in decls]
    decl = next(d for d in decls if d["name"] == allowed[0])
    schema = decl.get("parametersJsonSchema", decl.get("parameters")) or {"type": "object"}
    return [{"name": decl["name"], "args": schema_instance(schema, _last_user_text(body))}]


def _derived_text(body: dict, cfg: dict, i: int) -> str:
    results = _function_results(body)
    text = "; ".join(results) if results else f"Echo: {_last_user_text(body)}"
    text += f" ({i})" if i else ""
    if cfg.get("responseMimeType") != "application/json":
        return text
    schema = cfg.get("responseJsonSchema", cfg.get("responseSchema"))
    return json.dumps(schema_instance(schema, text) if schema is not None else {"echo": text}, ensure_ascii=False)


def _candidates(reply: Reply, body: dict, model: str) -> tuple[list[list[dict]], list[str], int, int]:
    """Per candidate: its parts in stream order (one piece each); its finishReason;
    then candidates' and thoughts' token counts."""
    cfg = _norm(body.get("generationConfig", body.get("generation_config", {})))
    tc = _norm(cfg.get("thinkingConfig"))
    last = _last_user_text(body)
    limit = cfg.get("maxOutputTokens")
    budget = tc.get("thinkingBudget")
    thinks = tc.get("thinkingLevel") is not None or budget not in (None, 0)
    calls = function_calls(reply, body)
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
        source = reply.text if reply.text is not None else "" if calls else _derived_text(body, cfg, i)
        left = None if limit is None else max(0, limit - len(tokens(thought)))
        answer, why, _ = generate(source, left, cfg.get("stopSequences") or [])
        out_tokens += len(tokens(answer))
        steps += [{"text": p} for p in pieces(answer, reply.chunks) if p]
        for k, call in enumerate(calls):  # a call comes whole, in a part of its own
            steps.append({"functionCall": call})
            # Thinking models sign the first call of a step; the signature must come back with it.
            if k == 0 and (thinks or any(fnmatch.fnmatch(model, p) for p in THINKING_ONLY)):
                steps[-1]["thoughtSignature"] = _signature(f"{thought}{i}:{call['name']}")
            out_tokens += len(tokens(dumps(call.get("args", {})).decode()))
        if thinks and not calls:
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
    seqs, reasons, out_tokens, thought_tokens = _candidates(reply, body, model)
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
