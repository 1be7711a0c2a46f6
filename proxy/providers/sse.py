"""Incremental Server-Sent Events parsing, for every streaming provider connector.

Upstream bytes arrive cut anywhere: inside `data:`, between `\\r` and `\\n`, inside a multi-byte
UTF-8 character. The parser works on bytes and only hands out whole events, so a split
character is reassembled before anything decodes it.
"""

from __future__ import annotations

from collections.abc import Iterator


class SSEParser:
    """Feed bytes in; get the `data` payload of each complete event out."""

    __slots__ = ("_buffer", "_data", "_pending_cr")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._data: list[bytes] = []
        self._pending_cr = False  # a chunk ended on "\r": a following "\n" belongs to it

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        if not chunk:  # an empty read must not forget a pending "\r"
            return
        if self._pending_cr and chunk[:1] == b"\n":
            chunk = chunk[1:]
        self._pending_cr = False
        buffer = self._buffer
        buffer += chunk
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
