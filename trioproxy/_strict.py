"""Strict HTTP/1.1 framing checks on raw bytes, before and beside h11 (pure, no I/O).

h11 is lenient where other parsers in a proxy chain are strict (bare LF, obs-fold, some
control characters, chunk-extension bytes). Two parsers reading one message differently is
request smuggling, so what h11 would let through and a strict parser (llhttp) would reject or
read otherwise, we refuse here, on the very bytes h11 is about to parse.

(Interface stub: the checks are filled in by the strictness work; see tests/test_strict.py.)
"""

from __future__ import annotations


class FramingError(ValueError):
    """Bytes a strict parser would reject; ``status`` is the answer to give (400, 414, 431)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def find_head_end(buffer: bytes | bytearray, start: int) -> int:
    """Index just past the head's terminating blank line, or -1 if it is not complete yet.

    ``start`` is where the previous call stopped looking (0 at first); raises FramingError
    as soon as the bytes so far cannot begin a strictly valid head (e.g. a bare LF).
    """
    index = buffer.find(b"\r\n\r\n", max(0, start - 3))
    return -1 if index < 0 else index + 4


def check_request_head(
    head: bytes | bytearray,
    *,
    max_request_line_bytes: int,
    max_header_count: int,
) -> None:
    """Raise FramingError unless ``head`` (request line through the blank line) is strictly
    valid HTTP/1.1 or HTTP/1.0."""


def check_response_head(head: bytes | bytearray) -> None:
    """Raise FramingError unless a response head (status line through blank line) is strict."""


class ChunkedChecker:
    """Follows a chunked body's framing byte by byte alongside h11, raising FramingError on
    anything a strict parser would reject (chunk-size form and size, extension bytes, line
    endings, trailer fields)."""

    def feed(self, data: bytes | bytearray) -> None:
        """Check the next bytes of the body; bytes past its end are ignored."""
