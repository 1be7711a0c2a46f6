"""Reading a completion stream as a client would, strictly: the spec's `text/event-stream` chunk
schema as a validator, the SSE framing checked event by event, and the text per choice. Shared
by every test that streams completions through the proxy, whichever provider is behind it."""

from __future__ import annotations

import json
from typing import Any

# -- the spec's text/event-stream schema, as a validator ---------------------------------------------------
FINISH_REASONS = {"stop", "length", "content_filter", "tool_calls"}
CHUNK_REQUIRED = {"id", "choices", "model", "object"}
CHOICE_REQUIRED = {"finish_reason", "index", "text"}
USAGE_NUMBERS = ("completion_tokens", "prompt_tokens", "total_tokens")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def validate_chunk(chunk: Any) -> list[str]:
    """Problems of one stream chunk against the spec's `text/event-stream` schema ([] when valid)."""
    if not isinstance(chunk, dict):
        return [f"chunk is {type(chunk).__name__}, not an object"]
    problems = [f"missing `{k}`" for k in sorted(CHUNK_REQUIRED - chunk.keys())]
    for key in ("id", "model", "object", "system_fingerprint"):
        if key in chunk and not isinstance(chunk[key], str):
            problems.append(f"`{key}` is not a string")
    if "created" in chunk and not (isinstance(chunk["created"], str) or _number(chunk["created"])):
        problems.append("`created` is neither string nor number")
    choices = chunk.get("choices")
    if "choices" in chunk and not isinstance(choices, list):
        problems.append("`choices` is not an array")
    for i, choice in enumerate(choices if isinstance(choices, list) else []):
        if not isinstance(choice, dict):
            problems.append(f"choices[{i}] is not an object")
            continue
        problems += [f"choices[{i}] missing `{k}`" for k in sorted(CHOICE_REQUIRED - choice.keys())]
        if "finish_reason" in choice and choice["finish_reason"] not in FINISH_REASONS:
            problems.append(f"choices[{i}].finish_reason {choice['finish_reason']!r} not in the enum")
        if "index" in choice and not _number(choice["index"]):
            problems.append(f"choices[{i}].index is not a number")
        if "text" in choice and not isinstance(choice["text"], str):
            problems.append(f"choices[{i}].text is not a string")
    if "usage" in chunk:
        usage = chunk["usage"]
        if not isinstance(usage, dict):
            problems.append("`usage` is not an object")
        else:
            problems += [f"usage.{k} is not a number" for k in USAGE_NUMBERS if k in usage and not _number(usage[k])]
    return problems


# -- reading the proxy's SSE strictly ----------------------------------------------------------------------
def parse_sse(raw: bytes) -> tuple[list[dict], bool]:
    """Every event must be exactly `data: <json>\\n\\n`; returns the payloads and whether the
    stream ended with `data: [DONE]`. Asserts the format and every chunk's schema."""
    assert raw.endswith(b"\n\n"), raw[-200:]
    events = raw[:-2].split(b"\n\n")
    payloads: list[dict] = []
    done = False
    for n, event in enumerate(events):
        assert not done, "nothing may follow [DONE]"
        assert b"\n" not in event and b"\r" not in event, f"one line per event, got {event!r}"
        assert event.startswith(b"data: "), f"only data lines (no id:/event:/comments), got {event!r}"
        data = event[len(b"data: "):]
        if data == b"[DONE]":
            done = True
            continue
        payload = json.loads(data)
        payloads.append(payload)
    return payloads, done


def chunks_and_error(payloads: list[dict]) -> tuple[list[dict], dict | None]:
    """Split off a final in-band error event; every other payload must be a valid chunk."""
    error = None
    if payloads and "error" in payloads[-1]:
        error = payloads.pop()["error"]
        assert set(error) == {"message", "type", "param", "code"}, error
    for chunk in payloads:
        assert "error" not in chunk, "an error event is the last event"
        assert validate_chunk(chunk) == [], (chunk, validate_chunk(chunk))
    return payloads, error


def texts(chunks: list[dict]) -> dict[int, str]:
    out: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            out[choice["index"]] = out.get(choice["index"], "") + choice["text"]
    return out
