"""A streamed answer and a whole answer are the same answer: convert between the two, so a
streamed miss can be served later as JSON and a JSON miss replayed as SSE."""

from __future__ import annotations

import msgspec

from proxy.api.response import Choice, Completion, encoder
from proxy.providers.sse import frame

_chunk = msgspec.json.Decoder(Completion).decode


def _chunks(frames: list[bytes]) -> list[Completion]:
    """Our own SSE frames (`data: {chunk}\\n\\n`, several per batch) back into chunks."""
    chunks = []
    for event in b"".join(frames).split(b"\n\n"):
        payload = event.removeprefix(b"data: ")
        if payload and payload != b"[DONE]":
            chunks.append(_chunk(payload))
    return chunks


def whole(frames: list[bytes]) -> Completion | None:
    """Stream frames → one completion: texts joined per choice, the last reason and usage kept.
    None when there is nothing to keep."""
    chunks = _chunks(frames)
    if not chunks:
        return None
    first = chunks[0]
    texts: dict[int, list[str]] = {}
    reasons: dict[int, str] = {}
    usage = None
    for chunk in chunks:
        for choice in chunk.choices:
            texts.setdefault(choice.index, []).append(choice.text)
            reasons[choice.index] = choice.finish_reason
        if chunk.usage is not None:
            usage = chunk.usage
    choices = [Choice("".join(texts[i]), i, reasons[i]) for i in sorted(texts)]  # type: ignore[arg-type]
    return Completion(id=first.id, choices=choices, created=first.created, model=first.model,
                      object=first.object, system_fingerprint=first.system_fingerprint, usage=usage)


def framed(completion: Completion) -> list[bytes]:
    """One completion → SSE frames: a chunk per choice, the usage on the last."""
    chunks = [
        Completion(id=completion.id, choices=[choice], created=completion.created, model=completion.model,
                   object=completion.object, system_fingerprint=completion.system_fingerprint)
        for choice in completion.choices
    ] or [Completion(id=completion.id, choices=[], created=completion.created, model=completion.model,
                     object=completion.object, system_fingerprint=completion.system_fingerprint)]
    chunks[-1].usage = completion.usage
    return [b"".join(frame(encoder.encode(chunk)) for chunk in chunks)]
