"""Stage: the final prompt — `{{variable}}` placeholders filled from `orq.inputs`, or a stored
prompt (`orq.prompt`) rendered with its default parameters under the request's own.

Placeholders are `{{name}}` (spaces inside the braces allowed); names are case-sensitive
letters, digits and underscores. A placeholder without a value is a 400 naming it. Text is
only templated when the request asks for it (inputs or a stored prompt), so a prompt that
happens to contain braces — code, say — passes through untouched. Inside a stored prompt
`{{prompt}}` stands for the request's own `prompt`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable
from typing import Any

import msgspec

from proxy.api.request import InputItem
from proxy.core.errors import ErrorCode, ErrorType, ProxyError, bad_request
from proxy.core.model import Message, TextPart, with_prompt
from proxy.pipeline.call import Call
from proxy.pipeline.stage import Next, Outcome
from proxy.prompts import PromptRegistry

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
_json = msgspec.json.Encoder()


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return _json.encode(value).decode()  # numbers, booleans, objects: their JSON text


def input_values(inputs: dict[str, Any] | list[InputItem] | None) -> dict[str, str]:
    if inputs is None:
        return {}
    if isinstance(inputs, dict):
        return {key: _text(value) for key, value in inputs.items()}
    return {item.key: _text(item.value) for item in inputs}


def rendered_size(template: str, values: dict[str, str]) -> int:
    """The length `render` would produce, from placeholder counts and value lengths: a 60 KB
    body of `{{a}}{{a}}…` with a 10 KB `a` must be refused before it becomes 100 MB."""
    size = len(template)
    for match in _PLACEHOLDER.finditer(template):
        size += len(values.get(match[1], "")) - (match.end() - match.start())
    return size


def check_size(templates: list[tuple[str, dict[str, str]]], limit: int) -> None:
    total = sum(rendered_size(template, values) for template, values in templates)
    if total > limit:
        raise ProxyError(413, f"The prompt after filling in `orq.inputs` would be {total} characters; the limit "
                         f"is {limit}", param="orq.inputs", code=ErrorCode.payload_too_large)


def _texts(message: Message) -> list[str]:
    content = message.content
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [part.text for part in content if isinstance(part, TextPart)]
    return []


def render(template: str, values: dict[str, str], param: str) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match[1]
        if name not in values:
            raise bad_request(f"Prompt variable `{name}` has no value in `orq.inputs`", param)
        return values[name]

    return _PLACEHOLDER.sub(fill, template)


def _rendered(message: Message, values: dict[str, str], param: str) -> Message:
    content = message.content
    if isinstance(content, str):
        return msgspec.structs.replace(message, content=render(content, values, param))
    if isinstance(content, list):
        parts = [msgspec.structs.replace(part, text=render(part.text, values, param)) if isinstance(part, TextPart)
                 else part for part in content]
        return msgspec.structs.replace(message, content=parts)
    return message


class TemplatingStage:
    def __init__(self, prompts: PromptRegistry, max_chars: int) -> None:
        self.prompts = prompts
        self.max_chars = max_chars

    def __call__(self, call: Call, next: Next) -> Awaitable[Outcome]:
        orq = call.request.orq
        if orq is not None and (orq.prompt is not None or orq.inputs is not None):
            values = input_values(orq.inputs)
            if orq.prompt is not None:
                self._stored(call, orq.prompt.id, values)
            elif call.chat.prompt is None:  # a chat: each message's text is a template
                check_size([(text, values) for m in call.chat.messages for text in _texts(m)], self.max_chars)
                call.chat = msgspec.structs.replace(
                    call.chat, messages=[_rendered(m, values, f"messages[{i}].content")
                                         for i, m in enumerate(call.chat.messages)])
            else:
                prompt = call.chat.prompt
                prompts = [prompt] if isinstance(prompt, str) else prompt
                check_size([(p, values) for p in prompts], self.max_chars)
                rendered = [render(p, values, "orq.inputs") for p in prompts]
                call.chat = with_prompt(call.chat, rendered[0] if isinstance(prompt, str) else rendered)
        return next(call)

    def _stored(self, call: Call, prompt_id: str, values: dict[str, str]) -> None:
        stored = self.prompts.latest(prompt_id)
        if stored is None:
            raise ProxyError(404, f"Stored prompt {prompt_id!r} not found", type=ErrorType.not_found,
                             param="orq.prompt.id", code=ErrorCode.not_found)
        own = call.chat.prompt
        if own is None:
            raise bad_request("Stored prompts (`orq.prompt`) are text prompts for completions; on chat send the "
                              "messages themselves", "orq.prompt")
        if own and "prompt" not in {m[1] for m in _PLACEHOLDER.finditer(stored.template)}:
            raise bad_request(f"`prompt` was given but stored prompt {prompt_id!r} has no {{{{prompt}}}} "
                              "placeholder to put it in; send an empty prompt", "prompt")
        requests = own if isinstance(own, list) else [own or ""]
        check_size([(stored.template, {**values, "prompt": text}) for text in requests], self.max_chars)
        rendered = [render(stored.template, {**values, "prompt": text}, "orq.inputs") for text in requests]
        chat = with_prompt(call.chat, rendered if isinstance(own, list) else rendered[0])
        # The stored prompt's parameters are defaults: the request's own fields win.
        unset = {name: value for name, value in stored.params.items() if getattr(chat, name) is None}
        call.chat = msgspec.structs.replace(chat, **unset) if unset else chat
        call.log["prompt_id"] = stored.id
        call.log["prompt_version"] = stored.version
