"""The request as rules see it (`core/_requestview`): path normalisation, client address,
the view itself. Pure. (Split out of the former test_rules.py.)"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trioproxy.core._requestview import client_address, normalize_path, request_view

# --- Pieces ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "normal"),
    [
        (b"/", b"/"),
        (b"/a/b", b"/a/b"),
        (b"/a/b/", b"/a/b/"),
        (b"//a///b", b"/a/b"),
        (b"/a/./b/../c", b"/a/c"),
        (b"/a/b/..", b"/a/"),
        (b"/a/b/.", b"/a/b/"),
        (b"/../../a", b"/a"),
        (b"/..", b"/"),
        (b"/%7euser/%41%2f%2a", b"/~user/A%2F%2A"),
        (b"/%2e%2e/%2E/a", b"/a"),
        (b"/a%", b"/a%"),
        (b"/.well-known/x", b"/.well-known/x"),
        (b"/a/..b/c.", b"/a/..b/c."),
        (b"*", b"*"),
    ],
)
def test_normalize_path(path: bytes, normal: bytes) -> None:
    assert normalize_path(path) == normal


@given(st.text(alphabet="/.%2eEa~", max_size=20))
def test_normalize_path_is_idempotent_and_leaves_no_dot_segments(text: str) -> None:
    normal = normalize_path(("/" + text).encode())
    assert normalize_path(normal) == normal
    assert normal.startswith(b"/")
    assert b"//" not in normal
    assert all(segment not in (b".", b"..") for segment in normal.split(b"/"))


def test_client_address() -> None:
    assert client_address("::ffff:192.0.2.1") == (4, 0xC0000201)
    assert client_address("192.0.2.1") == (4, 0xC0000201)
    assert client_address("[::1]") is None
    assert client_address("") is None


def test_request_view() -> None:
    request = request_view(
        b"GET",
        b"/a//b/../c?x=1",
        [
            (b"HOST", b" WWW.Example.com.:8080 "),
            (b"x-forwarded-proto", b"HTTPS"),
            (b"True-Client-IP", b" 192.0.2.7 "),
            (b"True-Client-IP", b"192.0.2.8"),
        ],
        "10.0.0.1",
    )
    assert (request.path, request.query, request.host) == (b"/a/c", b"x=1", b"www.example.com")
    assert (request.client_ip, request.scheme) == ("192.0.2.7", b"https")
    assert request.target == b"/a//b/../c?x=1"
    odd = request_view(b"GET", b"/", [(b"Host", b"a b")], "10.0.0.1")
    assert (odd.host, odd.client_ip, odd.scheme) == (b"", "10.0.0.1", b"http")
