"""A non-ASCII upstream host name is refused where the option is read, with a one-line
message: the server encodes the upstream's authority as ASCII (the Host of an HTTP/1.0 request
without one), and a name like bücher.example ended the command with a UnicodeEncodeError
traceback after it had started listening."""

from __future__ import annotations

import pytest

from trioproxy.config._options import parse_upstream


@pytest.mark.parametrize("text", ["bücher.example:80", "例え.jp:8080", "host\u00a0:80"])
def test_a_non_ascii_upstream_host_is_refused_with_a_message(text: str) -> None:
    with pytest.raises(ValueError, match="host must be ASCII") as caught:
        parse_upstream(text)
    assert repr(text) in str(caught.value)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("xn--bcher-kva.example:80", ("xn--bcher-kva.example", 80)),
        ("[::1]:8080", ("::1", 8080)),
        ("next-hop:80", ("next-hop", 80)),
    ],
)
def test_ascii_upstream_hosts_are_taken_as_before(text: str, parsed: tuple[str, int]) -> None:
    assert parse_upstream(text) == parsed
