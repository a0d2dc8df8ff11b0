"""A head that arrives whole (`core._headreader`): its bytes are judged by the grammar check,
not scanned first, and yet a flaw in them (a CTL, a lone CR or LF) is refused before any size
limit, as `find_head_end`'s own scan would: 400, saying which flaw."""

from __future__ import annotations

import pytest

from trioproxy.core import _strict
from trioproxy.core._headreader import HeadReader
from trioproxy.core._strict import FramingError

from .test_headreader import feed, request_reader, response_reader

# Compiled (scripts/test-compiled), a module's calls are direct: a replaced function is not seen.
_COMPILED = not _strict.__file__.endswith(".py")

LONG_LINE = b"GET /" + b"a" * 40 + b" HTTP/1.1\r\n"  # past line_bytes=20
MANY_FIELDS = b"A: 1\r\nB: 2\r\nC: 3\r\n"  # past header_count=2
BIG = b"X-Big: " + b"b" * 80 + b"\r\n"  # past head_bytes=60


@pytest.mark.parametrize(
    ("head", "flaw"),
    [
        (LONG_LINE + b"Host: x\nX: 1\r\n\r\n", "bare LF"),  # the line too long: 414 else
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n" + MANY_FIELDS + b"\r\n", "control"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n" + BIG + b"\r\n", "bare CR"),  # 431 else
        (LONG_LINE + b"Host: x\r\nX: \x7f\r\n" + BIG + b"\r\n", "control"),  # 414 and 431
    ],
)
def test_a_flaw_in_a_request_heads_bytes_comes_before_its_size(head: bytes, flaw: str) -> None:
    limits = {"head_bytes": 60, "line_bytes": 20, "header_count": 2}
    assert feed(request_reader(**limits), [head]) == ("refused", 400, 0)
    with pytest.raises(FramingError, match=flaw):
        _read(request_reader(**limits), head)


def test_a_flaw_in_a_response_heads_bytes_comes_before_its_size() -> None:
    head = b"HTTP/1.1 200 OK\r\nX: a\nb\r\n" + BIG + b"\r\n"
    assert feed(response_reader(head_bytes=60), [head]) == ("refused", 400, 0)
    with pytest.raises(FramingError, match="bare LF"):
        _read(response_reader(head_bytes=60), head)


@pytest.mark.skipif(_COMPILED, reason="a compiled module's calls cannot be counted")
def test_a_whole_head_within_its_limits_is_scanned_by_the_grammar_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scans: list[int] = []
    real = _strict._check_line_bytes

    def counted(*args: object, **kwargs: object) -> None:
        scans.append(1)
        real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_strict, "_check_line_bytes", counted)
    head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    assert feed(request_reader(), [head]) == ("end", len(head), 0)
    assert scans == []
    assert feed(request_reader(), [head[:10], head[10:]]) == ("end", len(head), 0)
    assert scans == [1]  # (the incomplete first piece; the whole head then by the grammar)


def _read(reader: HeadReader, head: bytes) -> int:
    reader.add(head)
    return reader.head_end()
