"""Where one HTTP/1.1 head ends in bytes that arrive in pieces: strict-checked, size-bounded.

Pure (no I/O, no trio, no h11): the one head reader of every loop that reads a head, the
request loop (`engine._connection`), the response loop (`engine._response`) and both admin
servers. They keep only the I/O: receive by a deadline, then give the parser the bytes.

A head usually arrives whole in one receive, and is usually in the strict grammar's common
subset: `whole_request_head` and `whole_response_head` prove that with one match, and the
loops make a reader only for other heads. The reader works on the caller's buffer in place
and copies nothing; for a whole head, `head_end` costs one `find_head_end` and one strict
check. Bytes that arrive in pieces are judged once each (`find_head_end` resumes where it
stopped), and the size limits hold however they are split: the same bytes, whole or in any
pieces, give the same end or the same error.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from ._strict import (
    COMMON_REQUEST_HEAD,
    COMMON_RESPONSE_HEAD,
    FramingError,
    check_request_head,
    check_response_head,
    find_head_end,
    judge_head_bytes,
)

__all__ = [
    "FixedLimits",
    "HeadLimits",
    "HeadReader",
    "HeadTooLarge",
    "RequestHeadReader",
    "ResponseHeadReader",
    "whole_request_head",
    "whole_response_head",
]


class HeadLimits(Protocol):
    """The sizes a head may have; the engine passes its ``settings.limits`` as they are."""

    @property
    def max_header_bytes(self) -> int: ...  # the whole head (431 beyond)
    @property
    def max_request_line_bytes(self) -> int: ...  # with its CRLF (414 beyond); requests only
    @property
    def max_header_count(self) -> int: ...  # field lines (431 beyond); requests only


class FixedLimits(NamedTuple):
    """HeadLimits as constants (the admin endpoints, tests)."""

    max_header_bytes: int
    max_request_line_bytes: int = 0
    max_header_count: int = 0


class HeadTooLarge(FramingError):
    """A head, or a request line, over its size limit: not malformed, just too big (431, 414)."""


def whole_request_head(data: bytes, limits: HeadLimits) -> bool:
    """Whether ``data`` starts with a whole request head that a `RequestHeadReader` given
    ``data`` would accept, proven by one match (`_strict.COMMON_REQUEST_HEAD`) and three
    sizes: the usual head, costing a fraction of the reader's work. False says only that the
    reader must judge it (it may still be valid)."""
    match = COMMON_REQUEST_HEAD.match(data)
    if match is None:
        return False
    end = match.end()
    line_bytes = limits.max_request_line_bytes
    # (Each size counted only if the head's length leaves it in doubt: a field line has at
    # least 4 bytes, so a head of at most 4 bytes a field has at most that many.)
    return (
        end <= limits.max_header_bytes
        and (end <= line_bytes or data.find(b"\n") < line_bytes)  # (the line with its LF)
        and (
            end <= 4 * limits.max_header_count
            or data.count(b"\n", 0, end) - 2 <= limits.max_header_count
        )
    )


def whole_response_head(data: bytes, limits: HeadLimits) -> int:
    """Where the whole response head that ``data`` starts with ends, if a `ResponseHeadReader`
    given ``data`` would accept it, proven as by `whole_request_head`; -1 if the reader must
    judge it."""
    match = COMMON_RESPONSE_HEAD.match(data)
    if match is None:
        return -1
    end = match.end()
    return end if end <= limits.max_header_bytes else -1


class HeadReader:
    """Finds the end of one head in ``buffer``, which grows by `add`; `RequestHeadReader` and
    `ResponseHeadReader` say which kind. Made for a head the loops cannot take at once
    (`whole_request_head`): two arguments, the limits taken by reference."""

    __slots__ = ("_limits", "_searched", "buffer", "skipped")
    _REQUEST = True
    _KIND = "request"

    def __init__(self, buffer: bytearray, limits: HeadLimits) -> None:
        """``buffer`` holds the bytes so far (it is used, not copied)."""
        self.buffer = buffer
        self._limits = limits
        self._searched = 0  # where find_head_end stopped looking
        # Bytes of empty lines dropped before a request line (RFC 9112 2.2), in all.
        self.skipped = 0

    def add(self, data: bytes) -> None:
        self.buffer += data

    def head_end(self) -> int:
        """The offset just past a whole head that passed the strict checks, or -1 while more
        bytes are needed. Raises FramingError (``status`` 400 or 501) for malformed bytes,
        HeadTooLarge (414 for a request line, 431 for a head) for oversized ones."""
        buffer, limits, request = self.buffer, self._limits, self._REQUEST
        if request and buffer.startswith(b"\r\n"):
            self._skip_empty_lines()
        searched = self._searched
        end = find_head_end(buffer, searched, judge_whole=False)
        if end >= 0:
            # A whole head's bytes are judged by its grammar check, which refuses every byte
            # find_head_end would (CTLs, a lone CR or LF), not in a scan of their own; only
            # where a size limit answers before the grammar are they judged first, as when
            # the same bytes come in pieces, so that any split fails alike.
            try:
                if end > limits.max_header_bytes:
                    raise HeadTooLarge(f"{self._KIND} head too large", status=431)
                if request:
                    check_request_head(
                        buffer[:end],
                        max_request_line_bytes=limits.max_request_line_bytes,
                        max_header_count=limits.max_header_count,
                    )
                else:
                    check_response_head(buffer[:end])
            except FramingError as refused:
                if refused.status in (414, 431):  # (sizes: a 400 for the bytes comes first)
                    judge_head_bytes(buffer, searched, end)
                    if request and end > limits.max_header_bytes:
                        self._check_request_line()  # (then the line, as in pieces)
                raise
            return end
        if request:
            self._check_request_line()
        if len(buffer) > limits.max_header_bytes:
            raise HeadTooLarge(f"{self._KIND} head too large", status=431)
        self._searched = len(buffer)
        return -1

    def _check_request_line(self) -> None:
        buffer, line_limit = self.buffer, self._limits.max_request_line_bytes
        if len(buffer) > line_limit and b"\n" not in buffer[:line_limit]:
            # Counted as check_request_head counts a whole head: the line with its CRLF.
            raise HeadTooLarge("request line too long", status=414)

    def drop(self, end: int) -> None:
        """Forget a head read (``end`` from `head_end`), to read the next one (after a 1xx)."""
        del self.buffer[:end]
        self._searched = 0

    def _skip_empty_lines(self) -> None:
        # RFC 9112 2.2: a server SHOULD ignore empty lines before a request line (clients
        # send a stray CRLF after a POST body).
        buffer = self.buffer
        while buffer[:2] == b"\r\n":
            del buffer[:2]
            self.skipped += 2
        self._searched = 0


class RequestHeadReader(HeadReader):
    """A request head: empty lines before it skipped, its line and field count limited."""

    __slots__ = ()


class ResponseHeadReader(HeadReader):
    """A response head: only its size limited (``max_header_bytes``)."""

    __slots__ = ()
    _REQUEST = False
    _KIND = "response"
