"""`plan_request_of` and `response_fields_of` as they were before their fixed costs were cut
(and the response's pairs made only when read): a frozen copy, the reference the differential
test (`test_headers_differential`) holds the new ones to. Not to be edited."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from trioproxy.core._errors import ClientError, MethodNotAllowed, UpstreamError
from trioproxy.core._headers import BodyKind, Field, ForwardingRules, Headers, new_request_id

__all__ = ["RequestPlan", "ResponseFields", "plan_request_of", "response_fields_of"]

# RFC 9110 7.6.1 plus the de-facto ones (Keep-Alive, Proxy-Connection) and the proxy
# credentials, which are meant for us, not the next hop (RFC 9110 11.7).
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authorization",
        b"proxy-authenticate",
    }
)

# Fields a Connection header may name without effect: removing Host or Content-Length
# would change what the message means or how it is framed, not just drop a hop's option.
_NEVER_HOP_BY_HOP = frozenset({b"host", b"content-length"})

# RFC 9110 9.2.2. A request with one of these may be sent again when a reused connection
# turns out to be dead before any response byte arrived.
IDEMPOTENT_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})

# An incoming X-Request-ID is kept when it looks like an ID (UUIDs, hex, base64, ULIDs...),
# replaced when it does not: it lands in logs and other systems verbatim.
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._~:+/=@-]{1,128}")


# A Host value made of the configured upstream address: visible ASCII.
_AUTHORITY = re.compile(rb"[\x21-\x7e]+")


# Request headers whose (first) value the access log reports as it is, in the order the
# exchange's `_note_request` unpacks them.
NOTED_AS_IS = (
    b"referer",
    b"user-agent",
    b"x-forwarded-proto",
    b"x-forwarded-for",
    b"true-client-ip",
    b"section-io-id",
)
# ... and every request header whose first value is noted: traceparent is read again,
# strictly, only when present (`_tracecontext`).
NOTED_REQUEST_HEADERS = frozenset((*NOTED_AS_IS, b"traceparent"))


# What a client says about itself through the chain: believed only from a trusted peer.
_CLIENT_CLAIMS = frozenset({b"true-client-ip", b"x-forwarded-for"})


_NO_OPTIONS: frozenset[bytes] = frozenset()


def connection_options(headers: Iterable[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """The lower-cased names listed in every ``Connection`` field (RFC 9110 7.6.1)."""
    return _listed_options([value for name, value in headers if name.lower() == b"connection"])


def _listed_options(listed: Iterable[bytes]) -> frozenset[bytes]:
    """`connection_options` from the Connection fields' values."""
    names: set[bytes] = set()
    for value in listed:
        names.update(token.strip().lower() for token in value.split(b","))
    names.discard(b"")
    return frozenset(names - _NEVER_HOP_BY_HOP) if names else _NO_OPTIONS


def _offers_websocket(value: bytes) -> bool:
    return any(token.strip().split(b"/")[0].lower() == b"websocket" for token in value.split(b","))


def _origin_form(target: bytes, host: bytes | None) -> tuple[bytes, bytes]:
    """Turn an absolute-form target into origin-form; return it and the authority it named.

    RFC 9112 3.2.2: a server must accept absolute-form, and the Host field is then replaced
    by the target's authority. We refuse a disagreement instead: two hops reading two hosts
    is how cache poisoning starts.
    """
    if target.startswith(b"/") or target == b"*":
        return target, b""
    try:
        parts = urlsplit(target.decode("ascii", "replace"))
        parts.port  # noqa: B018 - urlsplit checks the port only when asked
    except ValueError as exc:  # a bad bracketed host, a non-numeric port...
        raise ClientError(f"malformed absolute-form target: {exc}") from exc
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ClientError("request target is neither origin-form nor absolute-form")
    authority = parts.netloc.encode("ascii")
    if host is not None and host.lower() != authority.lower():
        raise ClientError("absolute-form target names another host than the Host header")
    path = parts.path or "/"
    origin = path + ("?" + parts.query if parts.query or target.endswith(b"?") else "")
    return origin.encode("ascii"), authority


_USUAL_CONNECTION = frozenset({b"keep-alive", b"close"})


_WATCHED_IN_PLANS = (
    NOTED_REQUEST_HEADERS
    | HOP_BY_HOP
    | _CLIENT_CLAIMS
    | {b"content-length", b"host", b"x-request-id", b"x-forwarded-for"}
)

_READ_IN_RESPONSES = HOP_BY_HOP | {
    b"content-length",
    b"content-type",
    b"section-io-tag",
    b"x-request-id",
}


@dataclass(slots=True)
class RequestPlan:
    """How to forward one request, and the request headers the access log reports."""

    target: bytes
    headers: Headers
    body: BodyKind
    idempotent: bool
    upgrade: bool = False  # a WebSocket upgrade: Connection/Upgrade are kept for it
    peer_trusted: bool = True  # its True-Client-IP and X-Forwarded-For are believed
    request_id: bytes = b""
    host: bytes = b""
    # Applied to the final response's headers with its status (response-header rules).
    edit_response: Callable[[int, Headers], Headers] | None = None
    noted: dict[bytes, bytes] = field(default_factory=dict)
    # A rule's request body limit, over limits.max_request_body_bytes (None: no rule gave one).
    max_body_bytes: int | None = None


def plan_request_of(
    method: bytes,
    target: bytes,
    fields: Sequence[Field],
    http_version: bytes,
    *,
    peer_ip: bytes,
    rules: ForwardingRules,
    upstream_authority: bytes,
    max_header_count: int,
    make_request_id: Callable[[], bytes] = new_request_id,
) -> RequestPlan:
    """Decide the upstream request for a downstream one, in one pass over its ``fields``, as
    h11 parsed them, with their lower-case names (none is lower-cased here again).

    Raises ClientError for requests that must not be forwarded because a parser further up
    the chain could read them differently (RFC 9112 6.3, 3.2).
    """
    if len(fields) > max_header_count:
        raise ClientError(f"more than {max_header_count} header fields", status=431)
    if method == b"CONNECT":
        raise MethodNotAllowed("CONNECT: this is a reverse proxy, not a forward proxy")
    listed: list[bytes] = []  # (a loop, not a comprehension: no function made and called)
    for _, lname, value in fields:
        if lname == b"connection":
            listed.append(value)
    options = _listed_options(listed) if listed else _NO_OPTIONS
    # (Most requests have no Connection options, and most proxies no trusted_proxies: then
    # no set is built and no address decoded.)
    dropped = options | HOP_BY_HOP if options else HOP_BY_HOP
    trusted = rules.trusted_proxies is None or rules.trusts(peer_ip.decode("latin-1"))
    if not trusted:
        # Claims about the client from a peer we do not trust go no further: the upstream
        # hears of the TCP peer only (the access log still shows what was received).
        dropped = dropped | _CLIENT_CLAIMS
    # The names the loop does more with than pass on (most fields of a browser's request:
    # Accept, Cookie, Sec-*... are none of them, and take one set lookup).
    watched = _WATCHED_IN_PLANS | options if options else _WATCHED_IN_PLANS
    upgrade = False
    out: Headers = []
    noted: dict[bytes, bytes] = {}
    hosts: list[bytes] = []
    forwarded_for: list[bytes] = []
    xff_index = -1
    request_ids: list[bytes] = []
    request_id_index = -1
    content_length: bytes | None = None
    chunked = False
    for name, lname, value in fields:
        if lname not in watched:
            out.append((name, value))
            continue
        if lname in NOTED_REQUEST_HEADERS and lname not in noted:
            noted[lname] = value
        if lname == b"transfer-encoding":
            chunked = True  # h11 accepts nothing but a single "chunked"
        elif lname == b"content-length":
            content_length = value
        elif lname == b"host":
            hosts.append(value)
        elif lname == b"upgrade" and b"upgrade" in options:
            upgrade = upgrade or _offers_websocket(value)
        if lname in dropped:
            continue
        if lname == b"x-request-id":
            # One X-Request-ID travels on, at the first one's place: the client's if it is
            # well-formed, else a fresh one (filled in below).
            if request_id_index < 0:
                request_id_index = len(out)
                out.append((name, b""))
            request_ids.append(value)
            continue
        if lname == b"x-forwarded-for" and rules.append_x_forwarded_for:
            # Merge every X-Forwarded-For field into one at the first one's place, as nginx's
            # $proxy_add_x_forwarded_for does, and append the peer below.
            if xff_index < 0:
                xff_index = len(out)
                out.append((name, value))
            forwarded_for.append(value)
            continue
        out.append((name, value))

    if chunked and content_length is not None:
        raise ClientError("both Content-Length and Transfer-Encoding")
    if len(hosts) > 1:
        raise ClientError("more than one Host header")
    host = b""  # the authority an absolute-form target names
    if not target.startswith(b"/"):  # (origin-form, nearly every request: nothing to do)
        target, host = _origin_form(target, hosts[0] if hosts else None)
    if not hosts:
        if http_version != b"1.0":
            raise ClientError("missing Host header")  # h11 rejects it first; belt and braces
        if not (host or _AUTHORITY.fullmatch(upstream_authority)):
            # The upstream address as configured: fields go upstream unchecked by h11.
            raise UpstreamError(f"upstream address {upstream_authority!r} cannot be a Host")
        out.insert(0, (b"Host", host or upstream_authority))
        # (The places noted for X-Request-ID and X-Forwarded-For move one on: filled in
        # where they were, our Host took the client's X-Forwarded-For as its value.)
        request_id_index += request_id_index >= 0
        xff_index += xff_index >= 0

    request_id = request_ids[0] if len(request_ids) == 1 else b""
    if not (request_id and _REQUEST_ID.fullmatch(request_id)):
        request_id = make_request_id()
    if request_id_index >= 0:
        out[request_id_index] = (out[request_id_index][0], request_id)
    else:
        out.append((b"X-Request-ID", request_id))

    if rules.append_x_forwarded_for:
        if xff_index >= 0:
            forwarded_for.append(peer_ip)
            out[xff_index] = (out[xff_index][0], b", ".join(forwarded_for))
        else:
            out.append((b"X-Forwarded-For", peer_ip))
    if not trusted:
        out.append((b"True-Client-IP", peer_ip))
        noted.pop(b"true-client-ip", None)  # not believed: remote_addr is the peer
    if rules.via:  # (the field made once, without a call, for nearly every request)
        out.append(
            rules._via_11 if http_version == b"1.1" else (b"Via", rules.via_value(http_version))
        )

    # Only WebSocket is tunnelled (RFC 6455 4.1: a GET over HTTP/1.1); other protocols
    # (h2c, ...) lose their Upgrade and the request goes on as plain HTTP/1.1.
    # A body would be read by the upload task while the tunnel reads the same socket.
    upgrade = (
        upgrade
        and method == b"GET"
        and http_version == b"1.1"
        and not chunked
        and content_length in (None, b"0")
    )
    if upgrade:
        out += [(b"Connection", b"upgrade"), (b"Upgrade", b"websocket")]
    body = BodyKind.NONE
    if chunked:
        body = BodyKind.CHUNKED
        out.append((b"Transfer-Encoding", b"chunked"))
    elif content_length is not None and content_length.strip() != b"0":
        body = BodyKind.LENGTH
    return RequestPlan(
        target=target,
        headers=out,
        body=body,
        idempotent=method in IDEMPOTENT_METHODS,
        upgrade=upgrade,
        peer_trusted=trusted,
        request_id=request_id,
        host=host or (hosts[0] if hosts else b""),
        noted=noted,
    )


class ResponseFields:
    """A response head as the client gets it (`headers`), and what the exchange reads of the
    origin's fields: its content type and section-io-tag (for the access line), and its
    framing (``chunked``; ``has_length``: a Content-Length, which stays in ``headers``).
    ``lowered``: the same fields with their lower-case names, as h11 takes them to send
    without normalising them again."""

    __slots__ = ("chunked", "content_type", "has_length", "headers", "lowered", "section_io_tag")

    def __init__(
        self,
        headers: Headers,
        lowered: list[Field],
        content_type: bytes,
        section_io_tag: bytes,
        chunked: bool,
        has_length: bool,
    ) -> None:
        # (No keyword-only parameters: a keyword call through the class builds a dict.)
        self.headers = headers
        self.lowered = lowered
        self.content_type = content_type
        self.section_io_tag = section_io_tag
        self.chunked = chunked
        self.has_length = has_length


def response_fields_of(
    fields: Iterable[Field],
    http_version: bytes,
    *,
    rules: ForwardingRules,
    request_id: bytes = b"",
    switching: bool = False,
) -> ResponseFields:
    """The upstream response's end-to-end headers, plus our Via; with what the exchange
    reads of them, found in the same pass (a response runs this once). ``fields``: as h11
    parsed them, with their lower-case names (no lower-casing here).

    Raises UpstreamError for framing a downstream parser could read two ways.
    """
    out: Headers = []
    lowered: list[Field] = []
    content_type = section_io_tag = b""
    has_length = chunked = False
    listed: list[bytes] = []  # the values of Connection fields
    for item in fields:
        name, lname, value = item
        if lname not in _READ_IN_RESPONSES:  # (most fields: Date, Server, ETag...)
            out.append((name, value))
            lowered.append(item)
            continue
        if lname == b"content-length":
            has_length = True
        elif lname == b"transfer-encoding":
            chunked = True
        elif lname == b"content-type":
            content_type = content_type or value
        elif lname == b"section-io-tag":
            section_io_tag = section_io_tag or value
        elif lname == b"connection":
            listed.append(value)
        if lname not in HOP_BY_HOP and not (request_id and lname == b"x-request-id"):
            out.append((name, value))
            lowered.append(item)
    if has_length and chunked:
        raise UpstreamError("upstream response has both Content-Length and Transfer-Encoding")
    # (Usually one "keep-alive" or "close", hop-by-hop already: then nothing more to drop.)
    if listed and (len(listed) > 1 or listed[0].lower() not in _USUAL_CONNECTION):
        options = connection_options((b"connection", value) for value in listed)
        if options - HOP_BY_HOP:
            lowered = [item for item in lowered if item[1] not in options]
            out = [(name, value) for name, _, value in lowered]
    if switching:  # a 101 for our WebSocket upgrade: the switch itself is end-to-end
        out += [(b"Connection", b"upgrade"), (b"Upgrade", b"websocket")]
        lowered += [
            (b"Connection", b"connection", b"upgrade"),
            (b"Upgrade", b"upgrade", b"websocket"),
        ]
    if request_id:  # the client learns the ID its request is logged under
        out.append((b"X-Request-ID", request_id))
        lowered.append((b"X-Request-ID", b"x-request-id", request_id))
    if rules.via:  # (the fields made once, without a call, for nearly every response)
        if http_version == b"1.1":
            out.append(rules._via_11)
            lowered.append(rules._via_field_11)
        else:
            via = rules.via_value(http_version)
            out.append((b"Via", via))
            lowered.append((b"Via", b"via", via))
    return ResponseFields(out, lowered, content_type, section_io_tag, chunked, has_length)
