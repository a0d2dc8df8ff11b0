"""Strict chunked-body framing checks, byte by byte alongside h11 (pure, no I/O).

The rule and its reasons are `_strict`'s (the intersection of RFC 9112, h11 and llhttp);
fuzz/test_strict_properties.py checks this checker against both parsers too.
"""

from __future__ import annotations

import re

from ._errors import readable
from ._strict import _FIELDS, _MAX_LENGTH, _TOKEN, FramingError, _check_line_bytes

__all__ = ["ChunkedChecker"]

_TRAILER_SECTION = re.compile(_FIELDS)
_TRAILER_FRAMING_FIELD = re.compile(rb"(?:^|\n)(content-length|transfer-encoding):", re.IGNORECASE)

# RFC 9112 7.1.1: chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ),
# chunk-ext-val = token / quoted-string. llhttp rejects the BWS and obs-text, so we do too.
_QUOTED_STRING = rb'"(?:[\t\x20\x21\x23-\x5b\x5d-\x7e]|\\[\t\x20-\x7e])*"'
_CHUNK_EXT = rb"(?:;" + _TOKEN + rb"(?:=(?:" + _TOKEN + rb"|" + _QUOTED_STRING + rb"))?)*"
# RFC 9112 7.1: chunk-size = 1*HEXDIG. At most 16 digits (a 64-bit size), no sign, no "0x".
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,16})" + _CHUNK_EXT + rb"\r\n")


# ChunkedChecker states.
_SIZE_LINE, _DATA, _DATA_CR, _DATA_LF, _TRAILERS, _DONE = range(6)


class ChunkedChecker:
    """Follows a chunked body's framing byte by byte alongside h11, raising FramingError on
    anything a strict parser would reject (chunk-size form and size, extension bytes, line
    endings, trailer fields).

    It is fed each received block *before* h11 parses it, and judges every byte as soon as it
    arrives (a bare LF in a trailer raises at once), so h11 never completes a body on bytes the
    checker has not passed. Chunk data is skipped by arithmetic; only size lines and the
    trailer section are parsed.
    """

    __slots__ = (
        "_line",
        "_max_line_bytes",
        "_max_trailer_bytes",
        "_remaining",
        "_state",
        "declared",
    )

    def __init__(self, *, max_line_bytes: int = 4096, max_trailer_bytes: int = 65536) -> None:
        # Chunk data bytes announced so far (each chunk's size, counted from its size line,
        # before its data arrives): what a body limit compares, before h11 parses the data.
        self.declared = 0
        self._state = _SIZE_LINE
        self._remaining = 0
        self._line = bytearray()
        self._max_line_bytes = max_line_bytes
        self._max_trailer_bytes = max_trailer_bytes

    @property
    def done(self) -> bool:
        """True once the last chunk and the trailer section have been seen whole."""
        return self._state == _DONE

    def feed(
        self, data: bytes | bytearray, start: int = 0, *, max_chunks: int | None = None
    ) -> int:
        """Check the bytes of ``data`` from ``start``; bytes past the body's end are ignored.

        Returns where it stopped: ``len(data)``, or earlier once ``max_chunks`` chunk-size
        lines were read (a caller bounding the work per slice feeds the rest later).
        """
        pos, size = start, len(data)
        budget = size if max_chunks is None else max_chunks
        while pos < size:
            state = self._state
            if state == _DATA:
                step = min(self._remaining, size - pos)
                pos += step
                self._remaining -= step
                if not self._remaining:
                    self._state = _DATA_CR
            elif state == _SIZE_LINE:
                if budget <= 0:
                    return pos
                budget -= 1
                if not self._line:  # the common case: a whole chunk in view, in one step
                    whole = self._whole_chunk(data, pos)
                    if whole:
                        pos = whole
                        continue
                pos = self._feed_size_line(data, pos)
            elif state in (_DATA_CR, _DATA_LF):
                # RFC 9112 7.1: chunk-data is followed by exactly CRLF (h11 < 0.16 took any two
                # bytes here: GHSA-vqfr-h8mv-ghfj).
                if data[pos] != (0x0D if state == _DATA_CR else 0x0A):
                    raise FramingError("chunk data not followed by CRLF")
                pos += 1
                self._state = _DATA_LF if state == _DATA_CR else _SIZE_LINE
            elif state == _TRAILERS:
                pos = self._feed_trailers(data, pos)
            else:  # _DONE: what follows belongs to the next message
                return size
        return size

    def _whole_chunk(self, data: bytes | bytearray, pos: int) -> int:
        """Where the chunk starting at ``pos`` ends, if its size line and data (and their
        CRLFs) are all in ``data`` and well formed; 0 leaves the byte-wise path to judge it
        (and to say what is wrong). A body of tiny chunks is mostly this."""
        newline = data.find(b"\n", pos, pos + self._max_line_bytes)
        if newline < 0:
            return 0
        match = _CHUNK_LINE.fullmatch(data, pos, newline + 1)
        if match is None:
            return 0
        size = int(match.group(1), 16)
        after = newline + 1 + size
        if not size or after + 2 > len(data) or data[after] != 0x0D or data[after + 1] != 0x0A:
            return 0  # the last chunk, a chunk that goes on past data, or a framing error
        self.declared += size
        return after + 2

    def _feed_size_line(self, data: bytes | bytearray, pos: int) -> int:
        newline = data.find(b"\n", pos)
        end = len(data) if newline < 0 else newline + 1
        self._line += data[pos:end]
        if newline < 0:
            if len(self._line) > self._max_line_bytes:
                raise FramingError("chunk-size line too long")
            # A CR must be the line's last byte but one: judge it as soon as a byte follows.
            cr = self._line.find(b"\r")
            if 0 <= cr < len(self._line) - 1:
                raise FramingError("bare CR in chunk-size line (RFC 9112 2.2)")
            return end
        line = self._line
        match = _CHUNK_LINE.fullmatch(line)
        if match is None:
            raise FramingError(f"malformed chunk-size line {readable(bytes(line[:40]))}")
        self._remaining = int(match.group(1), 16)
        if self._remaining > _MAX_LENGTH:
            raise FramingError("chunk size too large")
        self.declared += self._remaining
        if self._remaining:
            self._state = _DATA
            self._line = bytearray()
        else:
            # last-chunk: the trailer section follows. Keep this line's CRLF in the buffer so
            # an empty section ends at the first CRLF CRLF like a non-empty one.
            self._state = _TRAILERS
            self._line = bytearray(b"\r\n")
        return end

    def _feed_trailers(self, data: bytes | bytearray, pos: int) -> int:
        buffer = self._line
        seen = len(buffer)
        buffer += data[pos:]
        index = buffer.find(b"\r\n\r\n", max(0, seen - 3))
        stop = len(buffer) if index < 0 else index + 4
        low = seen - 1 if buffer[seen - 1] == 0x0D else seen
        _check_line_bytes(buffer, low, stop, complete=index >= 0)
        if index < 0:
            if len(buffer) > self._max_trailer_bytes:
                raise FramingError("trailer section too large", status=431)
            return len(data)
        section = bytes(buffer[2:stop])
        if _TRAILER_SECTION.fullmatch(section) is None:
            raise FramingError("malformed trailer field (RFC 9112 7.1.2)")
        forbidden = _TRAILER_FRAMING_FIELD.search(section)
        if forbidden is not None:
            # RFC 9110 6.5.1: framing fields are never trailers; llhttp rejects them.
            raise FramingError(f"{forbidden.group(1).decode()} in trailer section")
        self._state = _DONE
        self._line = bytearray()
        return pos + (stop - seen)
