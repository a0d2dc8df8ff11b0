"""The request as rules see it: a `RequestView` of a request head, its path normalised.

Pure: no I/O and no trio. Conditions and templates read only this view, so that every rule
sees the request as received, with the path as origins read it (`normalize_path`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Protocol

__all__ = [
    "RequestView",
    "ViewSource",
    "client_address",
    "normalize_escapes",
    "normalize_path",
    "request_view",
    "view_of",
]


class RequestView:
    """One request head, as the rules see it (read-only: nothing assigns to it once made).
    Build it with `request_view`.

    Made for every request that meets a rule, and most rules read only the path: the fields
    that come from the headers (host, client_ip, scheme) are found by one pass over them
    when one of them is first read, not before.
    """

    __slots__ = (
        "_client_ip",
        "_host",
        "_peer_ip",
        "_peer_trusted",
        "_scheme",
        "headers",
        "method",
        "path",
        "query",
        "target",
    )

    method: bytes
    target: bytes  # as received, origin-form: `$request_uri`
    path: bytes  # normalised (`normalize_path`), without the query
    query: bytes  # after "?", b"" when there is none
    headers: Sequence[tuple[bytes, bytes]]  # as received: conditions look names up
    _peer_ip: str
    _peer_trusted: bool
    _host: bytes | None  # None: not read from the headers yet (nor client_ip, scheme)
    _client_ip: str
    _scheme: bytes

    @property
    def host(self) -> bytes:
        """Host, lower-case, without port or trailing dot; b"" when missing or odd."""
        host = self._host
        return self._read_headers() if host is None else host

    @property
    def client_ip(self) -> str:
        """True-Client-IP from a trusted peer, else the TCP peer."""
        if self._host is None:
            self._read_headers()
        return self._client_ip

    @property
    def scheme(self) -> bytes:
        """b"https" when X-Forwarded-Proto says so, else b"http"."""
        if self._host is None:
            self._read_headers()
        return self._scheme

    def __init__(
        self,
        method: bytes,
        target: bytes,
        path: bytes,
        query: bytes,
        headers: Sequence[tuple[bytes, bytes]],
        peer_ip: str,
        peer_trusted: bool,
    ) -> None:
        self.method, self.target, self.path, self.query = method, target, path, query
        self.headers = headers
        self._peer_ip, self._peer_trusted = peer_ip, peer_trusted
        self._host, self._client_ip, self._scheme = None, peer_ip, b"http"

    def __repr__(self) -> str:
        return f"<RequestView {self.method.decode('latin-1')} {self.target[:80]!r}>"

    def _read_headers(self) -> bytes:
        """Find host, client_ip and scheme in the headers (one pass); returns the host."""
        host = true_client_ip = forwarded_proto = b""
        for name, value in self.headers:
            # Only three names matter here; comparing lengths first spares lower() on the rest.
            if len(name) in _VIEW_NAME_LENGTHS:
                lname = name.lower()
                if lname == b"host":
                    host = value
                elif lname == b"true-client-ip" and not true_client_ip:
                    true_client_ip = value
                elif lname == b"x-forwarded-proto" and not forwarded_proto:
                    forwarded_proto = value
        # The platform sets True-Client-IP to the client it vouches for; the TCP peer is the
        # previous proxy in the chain (docs/reference/access-log.md).
        if true_client_ip and self._peer_trusted:
            self._client_ip = true_client_ip.decode("latin-1").strip()
        if forwarded_proto.strip().lower() == b"https":
            self._scheme = b"https"
        self._host = host = _clean_host(host)
        return host


def request_view(
    method: bytes,
    target: bytes,
    headers: Sequence[tuple[bytes, bytes]],
    peer_ip: str,
    *,
    peer_trusted: bool = True,
) -> RequestView:
    """The view of a request: ``target`` in origin-form, ``headers`` as the client sent them.

    From a peer outside ``forwarding.trusted_proxies`` True-Client-IP is not believed.
    """
    raw_path, _, query = target.partition(b"?")
    # (Positional: a class called with a keyword builds a dict for it.)
    return RequestView(
        method, target, normalize_path(raw_path), query, headers, peer_ip, peer_trusted
    )


class ViewSource(Protocol):
    """What makes the view of a request only if something reads it (most requests that meet
    only rules that test nothing, with a hook that never reads the request, need none): the
    engine's exchange itself, so that a request that needs no view makes nothing for it."""

    def received_view(self) -> RequestView:
        """The view of the request as received (its target origin-form)."""
        ...


def view_of(source: RequestView | ViewSource) -> RequestView:
    """The view itself, made from its `ViewSource` if it was not made yet."""
    if isinstance(source, RequestView):
        return source
    return source.received_view()


_VIEW_NAME_LENGTHS = frozenset({len(b"host"), len(b"true-client-ip"), len(b"x-forwarded-proto")})

# Host names and IP literals only: `$host` goes into Location headers, so nothing else may
# come through (a Host of "evil.test/x@" must not become part of a redirect).
_HOST = re.compile(rb"([a-z0-9._-]+|\[[0-9a-f:.]+\])(?::[0-9]*)?")


@lru_cache(maxsize=256)  # a site has a few names; strangers' Host values just churn it
def _clean_host(value: bytes) -> bytes:
    match = _HOST.fullmatch(value.strip().lower())
    return match.group(1).rstrip(b".") if match else b""


_PERCENT = re.compile(rb"%([0-9A-Fa-f]{2})")
# None when a path is its own normalised form: no escape, dot segment or double slash.
_MAYBE_ABNORMAL = re.compile(rb"%|/\.|//").search
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def normalize_path(path: bytes) -> bytes:
    """The path as an origin reads it (RFC 3986 6.2.2), so that rules cannot be walked around.

    Percent-encoded unreserved characters are decoded (``%61`` is ``a``, ``%2e`` is ``.``) and
    other escapes upper-cased; then dot segments are resolved (5.2.4) and runs of slashes
    merged (as nginx's ``merge_slashes``). Reserved escapes such as ``%2F`` stay encoded.
    """
    if path[:1] != b"/" or _MAYBE_ABNORMAL(path) is None:
        return path  # the common case: nothing to do (one search, not three)
    if b"%" in path:
        path = normalize_escapes(path)
    segments: list[bytes] = []
    for segment in path.split(b"/")[1:]:
        if segment == b"..":
            if segments:
                segments.pop()
        elif segment not in (b"", b"."):
            segments.append(segment)
    # "/a/", "/a/." and "/a/b/.." all name a directory: keep the trailing slash.
    trailing = segments and path.rsplit(b"/", 1)[1] in (b"", b".", b"..")
    return b"/" + b"/".join(segments) + (b"/" if trailing else b"")


def normalize_escapes(text: bytes) -> bytes:
    """Percent-escapes of unreserved characters decoded, the others in upper case."""
    return _PERCENT.sub(_unescape, text)


def _unescape(match: re.Match[bytes]) -> bytes:
    byte = int(match.group(1), 16)
    return bytes((byte,)) if byte in _UNRESERVED else b"%" + match.group(1).upper()


@lru_cache(maxsize=4096)
def client_address(text: str) -> tuple[int, int] | None:
    """(IP version, address as an integer), or None for anything that is not an address.

    Cached: a client sends many requests, and parsing costs more than the rest of a rule.
    An IPv4-mapped IPv6 address is its IPv4 address, so one CIDR list covers both spellings.
    """
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.version, int(address)
