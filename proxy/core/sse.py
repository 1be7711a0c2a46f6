"""Incremental Server-Sent Events parsing, for every streaming provider connector.

Upstream bytes arrive cut anywhere: inside `data:`, between `\\r` and `\\n`, inside a multi-byte
UTF-8 character. The parser works on bytes and only hands out whole events, so a split
character is reassembled before anything decodes it.

Searches are `data.find(sub) == -1` rather than `sub not in data`: on bytes, `in` first tries
`sub` as an integer and builds, then drops, a TypeError (CPython 3.11), which costs more than the
search itself on a short event, and this runs on every upstream read.
"""

from __future__ import annotations

from collections.abc import Iterator


def frame(payload: bytes) -> bytes:
    """One SSE event the way we write them (DESIGN.md): `data: <payload>` and a blank line."""
    return b"data: " + payload + b"\n\n"


class EventTooLarge(ValueError):
    """An event (or a line) grew past the parser's limit without ending."""


class SSEParser:
    """Feed bytes in; get the `data` payload of each complete event out. A partial event held
    longer than `limit` bytes raises EventTooLarge: an upstream cannot make us buffer without end."""

    __slots__ = ("_buffer", "_data", "_pending_cr", "limit")

    def __init__(self, limit: int = 1 << 20) -> None:
        self.limit = limit
        self._buffer = bytearray()
        self._data: list[bytes] = []
        self._pending_cr = False  # a chunk ended on "\r": a following "\n" belongs to it

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        if not chunk:  # an empty read must not forget a pending "\r"
            return
        region = self._region(chunk)
        if region is not None:
            yield from self.events(region)
            return
        yield from self._general()

    def _general(self) -> Iterator[bytes]:
        buffer = self._buffer
        start = 0
        length = len(buffer)
        while start < length:
            # Find the next line end of any of the three kinds.
            lf = buffer.find(b"\n", start)
            cr = buffer.find(b"\r", start, lf if lf != -1 else length)
            if cr != -1:
                end, after = cr, cr + 1
                if after < length and buffer[after] == 0x0A:
                    after += 1
                elif after == length:
                    self._pending_cr = True
            elif lf != -1:
                end, after = lf, lf + 1
            else:
                break
            event = self._line(bytes(buffer[start:end]))
            if event is not None:
                yield event
            start = after
        del buffer[:start]
        if len(buffer) > self.limit:
            raise EventTooLarge(f"an SSE line grew past {self.limit} bytes")

    def feed_region(self, chunk: bytes) -> bytes | None:
        """Buffer `chunk`; in the common framing (LF only, no event half-parsed) return the
        complete events as one piece of bytes, separated by blank lines, for a caller that can
        treat them in bulk (b"" when none is complete yet; `events(region)` splits it). None
        when the general parser must run: then iterate `drain()`."""
        if not chunk:
            return b""
        return self._region(chunk)

    def drain(self) -> Iterator[bytes]:
        """Events from what is buffered, by the general parser (after feed_region gave None)."""
        return self._general()

    def _region(self, chunk: bytes) -> bytes | None:
        if self._pending_cr and chunk[:1] == b"\n":
            chunk = chunk[1:]
        self._pending_cr = False
        buffer = self._buffer
        if not buffer and not self._data and chunk[-2:] == b"\n\n" and chunk.find(b"\r") == -1:
            return chunk[:-2]  # whole events in one read, the usual case: no buffering at all
        buffer += chunk
        if self._data or buffer.find(b"\r") != -1:
            return None
        end = buffer.rfind(b"\n\n")
        if end == -1:
            if len(buffer) > self.limit:
                raise EventTooLarge(f"an SSE event grew past {self.limit} bytes")
            return b""
        complete = bytes(buffer[:end])
        del buffer[: end + 2]
        return complete

    def events(self, region: bytes) -> Iterator[bytes]:
        """The `data` of each event of a region from feed_region."""
        for event in region.split(b"\n\n"):
            if event[:6] == b"data: " and event.find(b"\n") == -1:
                yield event[6:]  # one-line `data:` event: no need to walk it line by line
                continue
            for line in event.split(b"\n"):
                data = self._line(line)
                if data is not None:
                    yield data
            data = self._line(b"")
            if data is not None:
                yield data

    def _line(self, line: bytes) -> bytes | None:
        if not line:  # blank line: dispatch the event
            if not self._data:
                return None
            data = b"\n".join(self._data)
            self._data = []
            return data
        if line[:1] == b":":  # comment / keep-alive
            return None
        field, _, value = line.partition(b":")
        if field == b"data":
            self._data.append(value[1:] if value[:1] == b" " else value)
        # event:, id:, retry: carry nothing a completion stream needs.
        return None

    def close(self) -> Iterator[bytes]:
        """End of stream: an event without its final blank line still counts."""
        if self._buffer:
            line = bytes(self._buffer)
            self._buffer.clear()
            event = self._line(line.rstrip(b"\r"))
            if event is not None:
                yield event
        event = self._line(b"")
        if event is not None:
            yield event
