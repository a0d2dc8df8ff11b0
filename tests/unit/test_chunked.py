"""The strict chunked checker (`core._chunked`) on chunk data not followed by CRLF.

h11 before 0.16 took any two bytes after chunk data as its CRLF (GHSA-vqfr-h8mv-ghfj, a
smuggling flaw): the checker must refuse them itself, whichever h11 is installed, on its fast
path (a whole chunk in view) as on its byte-wise one (a chunk split across reads).
"""

from __future__ import annotations

import pytest

from trioproxy.core._chunked import ChunkedChecker
from trioproxy.core._strict import FramingError

# "5\r\nhello" then two bytes that are not CRLF, then what would read as the last chunk: a
# parser that skips the two bytes sees a complete body and takes what follows as a request.
SMUGGLING = [
    b"5\r\nhelloXY0\r\n\r\n",
    b"5\r\nhello\n\r0\r\n\r\n",  # the two right bytes in the wrong order
    b"5\r\nhello\r\r0\r\n\r\n",
    b"5\r\nhello\n\n0\r\n\r\n",
    b"5\r\nhelloXY5\r\nworld\r\n0\r\n\r\n",
]


def feed_in_pieces(body: bytes, piece: int) -> None:
    checker = ChunkedChecker()
    for start in range(0, len(body), piece):
        checker.feed(body[start : start + piece])


@pytest.mark.parametrize("body", SMUGGLING)
@pytest.mark.parametrize("piece", [1 << 20, 1, 3, 7])
def test_chunk_data_followed_by_two_wrong_bytes_is_refused(body: bytes, piece: int) -> None:
    with pytest.raises(FramingError, match="not followed by CRLF"):
        feed_in_pieces(body, piece)


def test_the_same_bodies_with_crlf_are_accepted() -> None:
    # The control: only the two bytes differ.
    for body in (b"5\r\nhello\r\n0\r\n\r\n", b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n"):
        checker = ChunkedChecker()
        assert checker.feed(body) == len(body)
        assert checker.done
