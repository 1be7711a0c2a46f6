"""Request checks of OpenAI's ``POST /v1/chat/completions``, as the public API reference
describes the body and as the real API words its 400s (``param`` names the field,
``code`` is ``invalid_type``, ``missing_required_parameter``, ``invalid_value``...).

`check(body, model)` raises `BadRequest` on the first problem found.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any

from tests.emulators.openai_wire import BadRequest

__all__ = ["KNOWN_FIELDS", "REASONING_MODELS", "check", "is_reasoning_model"]

# Every top-level field of the chat request in the API reference.
KNOWN_FIELDS = frozenset({
    "model", "messages", "audio", "frequency_penalty", "function_call", "functions",
    "logit_bias", "logprobs", "max_completion_tokens", "max_tokens", "metadata",
    "modalities", "n", "parallel_tool_calls", "prediction", "presence_penalty",
    "prompt_cache_key", "reasoning_effort", "response_format", "safety_identifier", "seed",
    "service_tier", "stop", "store", "stream", "stream_options", "temperature",
    "tool_choice", "tools", "top_logprobs", "top_p", "user", "verbosity",
    "web_search_options",
})
# Reasoning models take max_completion_tokens and reasoning_effort, refuse max_tokens
# and any sampling temperature/top_p but the default 1.
REASONING_MODELS = ("o1*", "o3*", "o4*", "gpt-5*")
EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
ROLES = ("system", "assistant", "user", "tool", "developer")
# Part types each role may send.
PARTS = {
    "system": ("text",),
    "developer": ("text",),
    "user": ("text", "image_url", "input_audio", "file"),
    "assistant": ("text", "refusal"),
    "tool": ("text",),
}
_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def is_reasoning_model(model: str) -> bool:
    return any(fnmatch.fnmatch(model, p) for p in REASONING_MODELS)


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    return {str: "string", int: "integer", float: "decimal", list: "array", dict: "object"}.get(
        type(v), "value"
    )


def _type_error(param: str, expected: str, v: Any) -> BadRequest:
    got = _kind(v)
    art = "an" if got[0] in "aeiou" else "a"
    message = f"Invalid type for '{param}': expected {expected}, but got {art} {got} instead."
    return BadRequest(message, param, "invalid_type")


def _missing(param: str) -> BadRequest:
    return BadRequest(f"Missing required parameter: '{param}'.", param, "missing_required_parameter")


def _one_of(param: str, v: Any, allowed: tuple[str, ...]) -> BadRequest:
    quoted = [f"'{a}'" for a in allowed]
    listed = ", ".join(quoted[:-1]) + f", and {quoted[-1]}" if len(quoted) > 1 else quoted[0]
    message = f"Invalid value: '{v}'. Supported values are: {listed}."
    return BadRequest(message, param, "invalid_value")


def _typed(body: dict, key: str, types: tuple[type, ...], expected: str, param: str = "") -> Any:
    v = body.get(key)
    ok = isinstance(v, types) and not (isinstance(v, bool) and bool not in types)
    if v is not None and not ok:
        raise _type_error(param or key, expected, v)
    return v


def _number(body: dict, key: str, lo: float, hi: float, integer: bool = False) -> None:
    kind = "integer" if integer else "decimal"
    types: tuple[type, ...] = (int,) if integer else (int, float)
    v = _typed(body, key, types, f"{'an' if integer else 'a'} {kind}")
    if v is None:
        return
    if v < lo:
        message = (
            f"Invalid '{key}': {kind} below minimum value. Expected a "
            f"value >= {lo:g}, but got {v} instead."
        )
        raise BadRequest(message, key, f"{kind}_below_min_value")
    if v > hi:
        message = (
            f"Invalid '{key}': {kind} above maximum value. Expected a "
            f"value <= {hi:g}, but got {v} instead."
        )
        raise BadRequest(message, key, f"{kind}_above_max_value")


def _part(part: Any, role: str, param: str) -> None:
    if not isinstance(part, dict):
        raise _type_error(param, "an object", part)
    kind = part.get("type")
    if kind is None:
        raise _missing(f"{param}.type")
    if kind not in PARTS[role]:
        raise _one_of(f"{param}.type", kind, PARTS[role])
    if kind in ("text", "refusal"):
        if kind not in part:
            raise _missing(f"{param}.{kind}")
        _typed(part, kind, (str,), "a string", f"{param}.{kind}")
    elif kind == "image_url":
        image = part.get("image_url")
        if image is None:
            raise _missing(f"{param}.image_url")
        if not isinstance(image, dict):
            raise _type_error(f"{param}.image_url", "an object", image)
        url = image.get("url")
        if url is None:
            raise _missing(f"{param}.image_url.url")
        if not isinstance(url, str):
            raise _type_error(f"{param}.image_url.url", "a string", url)
        if not url.startswith(("http://", "https://", "data:image/")):
            message = (
                f"Invalid '{param}.image_url.url'. Expected a valid URL or a "
                "base64-encoded data URL with an image MIME type."
            )
            raise BadRequest(message, f"{param}.image_url.url", "invalid_value")
        detail = image.get("detail")
        if detail is not None and detail not in ("auto", "low", "high"):
            raise _one_of(f"{param}.image_url.detail", detail, ("auto", "low", "high"))


def _content(msg: dict, role: str, param: str, required: bool) -> None:
    if "content" not in msg or msg["content"] is None:
        if required:
            raise _missing(f"{param}.content")
        return
    content = msg["content"]
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _type_error(f"{param}.content", "one of a string or array of objects", content)
    for j, part in enumerate(content):
        _part(part, role, f"{param}.content[{j}]")


def _tool_calls(calls: Any, param: str) -> list[str]:
    if not isinstance(calls, list):
        raise _type_error(param, "an array", calls)
    ids = []
    for k, call in enumerate(calls):
        p = f"{param}[{k}]"
        if not isinstance(call, dict):
            raise _type_error(p, "an object", call)
        for key in ("id", "type", "function"):
            if key not in call:
                raise _missing(f"{p}.{key}")
        _typed(call, "id", (str,), "a string", f"{p}.id")
        if call["type"] != "function":
            raise _one_of(f"{p}.type", call["type"], ("function",))
        fn = call["function"]
        if not isinstance(fn, dict):
            raise _type_error(f"{p}.function", "an object", fn)
        for key in ("name", "arguments"):
            if key not in fn:
                raise _missing(f"{p}.function.{key}")
            _typed(fn, key, (str,), "a string", f"{p}.function.{key}")
        ids.append(call["id"])
    return ids


def _messages(messages: Any) -> None:
    if messages is None:
        raise _missing("messages")
    if not isinstance(messages, list):
        raise _type_error("messages", "an array", messages)
    if not messages:
        message = (
            "Invalid 'messages': empty array. Expected an array with "
            "minimum length 1, but got an empty array instead."
        )
        raise BadRequest(message, "messages", "empty_array")
    pending: list[str] = []  # tool_call ids still owed a tool message
    owner = -1  # index of the assistant message that made them
    for i, msg in enumerate(messages):
        p = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise _type_error(p, "an object", msg)
        role = msg.get("role")
        if role is None:
            raise _missing(f"{p}.role")
        if role not in ROLES:
            raise _one_of(f"{p}.role", role, ROLES)
        _typed(msg, "name", (str,), "a string", f"{p}.name")
        if pending and role != "tool":
            message = (
                "An assistant message with 'tool_calls' must be followed by tool messages responding "
                "to each 'tool_call_id'. The following tool_call_ids did not have response messages: "
                + ", ".join(pending)
            )
            raise BadRequest(message, f"messages.[{owner}].role")
        if role == "assistant":
            calls = msg.get("tool_calls")
            _content(msg, role, p, required=calls is None)
            if calls is not None:
                pending, owner = _tool_calls(calls, f"{p}.tool_calls"), i
        elif role == "tool":
            _content(msg, role, p, required=True)
            if "tool_call_id" not in msg:
                raise _missing(f"{p}.tool_call_id")
            call_id = _typed(msg, "tool_call_id", (str,), "a string", f"{p}.tool_call_id")
            if call_id not in pending:
                message = (
                    "Invalid parameter: messages with role 'tool' must be a "
                    "response to a preceeding message with 'tool_calls'."
                )
                raise BadRequest(message, f"messages.[{i}].role")
            pending.remove(call_id)
        else:
            _content(msg, role, p, required=True)
    if pending:
        message = (
            "An assistant message with 'tool_calls' must be followed by tool messages responding "
            "to each 'tool_call_id'. The following tool_call_ids did not have response messages: "
            + ", ".join(pending)
        )
        raise BadRequest(message, f"messages.[{owner}].role")


def _tools(body: dict) -> list[str]:
    tools = _typed(body, "tools", (list,), "an array")
    names = []
    for k, tool in enumerate(tools or []):
        p = f"tools[{k}]"
        if not isinstance(tool, dict):
            raise _type_error(p, "an object", tool)
        if tool.get("type") != "function":
            raise _one_of(f"{p}.type", tool.get("type"), ("function",))
        fn = tool.get("function")
        if fn is None:
            raise _missing(f"{p}.function")
        if not isinstance(fn, dict):
            raise _type_error(f"{p}.function", "an object", fn)
        if "name" not in fn:
            raise _missing(f"{p}.function.name")
        name = _typed(fn, "name", (str,), "a string", f"{p}.function.name")
        if not _NAME.match(name):
            message = (
                f"Invalid '{p}.function.name': string does not match pattern. Expected a "
                "string that matches the pattern '^[a-zA-Z0-9_-]+$'."
            )
            raise BadRequest(message, f"{p}.function.name", "invalid_value")
        _typed(fn, "description", (str,), "a string", f"{p}.function.description")
        _typed(fn, "parameters", (dict,), "an object", f"{p}.function.parameters")
        _typed(fn, "strict", (bool,), "a boolean", f"{p}.function.strict")
        names.append(name)
    return names


def _tool_choice(body: dict, names: list[str]) -> None:
    choice = body.get("tool_choice")
    if choice is None:
        return
    if not names:
        message = "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified."
        raise BadRequest(message, "tool_choice")
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise _one_of("tool_choice", choice, ("none", "auto", "required"))
        return
    if not isinstance(choice, dict):
        raise _type_error("tool_choice", "one of a string or object", choice)
    if choice.get("type") != "function":
        raise _one_of("tool_choice.type", choice.get("type"), ("function",))
    fn = choice.get("function")
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise _missing("tool_choice.function.name")
    if fn["name"] not in names:
        message = f"Invalid value for 'tool_choice': function '{fn['name']}' not found in 'tools'."
        raise BadRequest(message, "tool_choice", "invalid_value")


def _response_format(body: dict) -> None:
    rf = _typed(body, "response_format", (dict,), "an object")
    if rf is None:
        return
    kind = rf.get("type")
    if kind is None:
        raise _missing("response_format.type")
    if kind not in ("text", "json_object", "json_schema"):
        raise _one_of("response_format.type", kind, ("text", "json_object", "json_schema"))
    # The API insists the prompt asks for JSON, so the model is not left to guess.
    if kind == "json_object" and "json" not in repr(body.get("messages")).lower():
        message = (
            "'messages' must contain the word 'json' in some form, to "
            "use 'response_format' of type 'json_object'."
        )
        raise BadRequest(message, "messages")
    if kind == "json_schema":
        js = rf.get("json_schema")
        if js is None:
            raise _missing("response_format.json_schema")
        if not isinstance(js, dict):
            raise _type_error("response_format.json_schema", "an object", js)
        if "name" not in js:
            raise _missing("response_format.json_schema.name")
        _typed(js, "name", (str,), "a string", "response_format.json_schema.name")
        _typed(js, "schema", (dict,), "an object", "response_format.json_schema.schema")
        _typed(js, "strict", (bool,), "a boolean", "response_format.json_schema.strict")


def _unsupported(param: str) -> BadRequest:
    message = f"Unsupported parameter: '{param}' is not supported with this model."
    if param == "max_tokens":
        message += " Use 'max_completion_tokens' instead."
    return BadRequest(message, param, "unsupported_parameter")


def _per_model(body: dict, model: str) -> None:
    if is_reasoning_model(model):
        if body.get("max_tokens") is not None:
            raise _unsupported("max_tokens")
        for key in ("temperature", "top_p"):
            v = body.get(key)
            if v is not None and v != 1:
                message = (
                    f"Unsupported value: '{key}' does not support {v} with this "
                    "model. Only the default (1) value is supported."
                )
                raise BadRequest(message, key, "unsupported_value")
    elif body.get("reasoning_effort") is not None:
        raise _unsupported("reasoning_effort")


def check(body: dict, model: str, allow_unknown: bool = False) -> None:
    """Raise `BadRequest` for the first field the real API would refuse."""
    if not allow_unknown:
        for key in body:
            if key not in KNOWN_FIELDS:
                raise BadRequest(f"Unrecognized request argument supplied: {key}")
    _messages(body.get("messages"))
    for key in ("max_tokens", "max_completion_tokens"):
        _number(body, key, 1, 2**31, integer=True)
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _number(body, "frequency_penalty", -2, 2)
    _number(body, "presence_penalty", -2, 2)
    _number(body, "n", 1, 128, integer=True)
    _number(body, "top_logprobs", 0, 20, integer=True)
    _typed(body, "seed", (int,), "an integer")
    for key in ("logprobs", "stream", "parallel_tool_calls", "store"):
        _typed(body, key, (bool,), "a boolean")
    _typed(body, "user", (str,), "a string")
    _typed(body, "logit_bias", (dict,), "an object")
    if body.get("top_logprobs") is not None and body.get("logprobs") is not True:
        message = (
            "Invalid value for 'top_logprobs': 'logprobs' must be set "
            "to true when 'top_logprobs' is specified."
        )
        raise BadRequest(message, "top_logprobs", "invalid_value")
    stop = body.get("stop")
    if stop is not None and not isinstance(stop, str):
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise _type_error("stop", "one of a string or array of strings", stop)
        if len(stop) > 4:
            message = (
                "Invalid 'stop': array too long. Expected an array with maximum length "
                f"4, but got an array with length {len(stop)} instead."
            )
            raise BadRequest(message, "stop", "array_above_max_length")
    metadata = _typed(body, "metadata", (dict,), "an object")
    for k, v in (metadata or {}).items():
        if not isinstance(v, str):
            raise _type_error(f"metadata.{k}", "a string", v)
    opts = _typed(body, "stream_options", (dict,), "an object")
    if opts is not None:
        if body.get("stream") is not True:
            message = "The 'stream_options' parameter is only allowed when 'stream' is enabled."
            raise BadRequest(message, "stream_options")
        _typed(opts, "include_usage", (bool,), "a boolean", "stream_options.include_usage")
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in EFFORTS:
        raise _one_of("reasoning_effort", effort, EFFORTS)
    names = _tools(body)
    _tool_choice(body, names)
    if body.get("parallel_tool_calls") is not None and not names:
        message = (
            "Invalid value for 'parallel_tool_calls': 'parallel_tool_calls' "
            "is only allowed when 'tools' are specified."
        )
        raise BadRequest(message, "parallel_tool_calls")
    _response_format(body)
    _per_model(body, model)
