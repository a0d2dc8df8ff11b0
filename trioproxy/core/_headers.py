"""Header rules of a reverse proxy (RFC 9110 section 7.6, RFC 9112), as pure functions.

Input is what h11 parsed: header names as the peer spelled them (``Headers.raw_items()``) and
their values. Output is the header list to hand to the other side's h11 connection, which
then chooses the framing from the ``Content-Length`` / ``Transfer-Encoding`` we leave in.
"""

from __future__ import annotations

import binascii
import enum
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ._errors import ClientError, MethodNotAllowed, UpstreamError

if TYPE_CHECKING:
    from ._rulemodel import CidrSet

Headers = list[tuple[bytes, bytes]]
# A field with its lower-case name, as h11 holds one: (name as spelled, lower-case name, value).
Field = tuple[bytes, bytes, bytes]

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

# Framing headers never travel in trailers (RFC 9110 6.5.1).
_FORBIDDEN_IN_TRAILERS = HOP_BY_HOP | {b"content-length", b"host"}


# An incoming X-Request-ID is kept when it looks like an ID (UUIDs, hex, base64, ULIDs...),
# replaced when it does not: it lands in logs and other systems verbatim.
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._~:+/=@-]{1,128}")


# RFC 9110 5.6.2: a field name, or Via's pseudonym, is a token.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

# A Host value made of the configured upstream address: visible ASCII.
_AUTHORITY = re.compile(rb"[\x21-\x7e]+")


# Request IDs are drawn from the kernel's CSPRNG this many at a time: one getrandom() per
# request was a syscall per request; drawn ahead, they are as random and as unguessable.
_IDS_PER_DRAW = 64
_drawn_ids: list[bytes] = []  # the IDs drawn ahead, handed out from the end
# Where each ID lies in a draw's hex digits (cut by one map, not a generator step per ID).
_ID_SLICES = tuple(slice(i, i + 32) for i in range(0, 32 * _IDS_PER_DRAW, 32))

# A child process must never hand out its parent's IDs again.
os.register_at_fork(after_in_child=_drawn_ids.clear)


def new_request_id() -> bytes:
    """32 hex digits of randomness, the shape of nginx's $request_id."""
    if not _drawn_ids:
        digits = binascii.hexlify(os.urandom(16 * _IDS_PER_DRAW))
        _drawn_ids.extend(map(digits.__getitem__, _ID_SLICES))
    return _drawn_ids.pop()  # (atomic: two threads never get the same one)


class BodyKind(enum.Enum):
    NONE = "none"
    LENGTH = "length"
    CHUNKED = "chunked"


@dataclass(frozen=True, slots=True)
class ForwardingRules:
    via: bytes = b"trioproxy"  # pseudonym for Via; b"" adds no Via
    append_x_forwarded_for: bool = True
    # Peers whose True-Client-IP and X-Forwarded-For are believed; None: every peer.
    trusted_proxies: CidrSet | None = None
    # Our Via field for HTTP/1.1 (nearly every message: made once, not per message), as a
    # request's (name, value) and a response's (name, lower-case name, value).
    _via_11: tuple[bytes, bytes] = field(init=False, repr=False, compare=False, default=(b"", b""))
    _via_field_11: Field = field(init=False, repr=False, compare=False, default=(b"", b"", b""))
    # Via, X-Forwarded-For appended, every peer believed (the defaults): then an HTTP/1.1
    # request without X-Request-ID or X-Forwarded-For gets the same three fields appended.
    _usual: bool = field(init=False, repr=False, compare=False, default=False)

    def trusts(self, peer_ip: str) -> bool:
        return self.trusted_proxies is None or self.trusted_proxies.contains(peer_ip)

    def via_value(self, http_version: bytes) -> bytes:
        """Our Via field's value for a message of ``http_version`` ("1.1 trioproxy")."""
        if http_version == b"1.1":
            return self._via_11[1]
        return b"%s %s" % (http_version, self.via)

    def __post_init__(self) -> None:
        # Via goes to h11 as a known-valid field, unchecked: a pseudonym that is no token
        # (CR LF in Settings made in code, which no loader checked) would inject fields.
        if self.via and not _TOKEN.fullmatch(self.via):
            raise ValueError(f"forwarding.via_name must be an HTTP token, not {self.via!r}")
        value = b"1.1 " + self.via
        object.__setattr__(self, "_via_11", (b"Via", value))  # (frozen: set once, here)
        object.__setattr__(self, "_via_field_11", (b"Via", b"via", value))
        usual = bool(self.via) and self.append_x_forwarded_for and self.trusted_proxies is None
        object.__setattr__(self, "_usual", usual)


@dataclass(init=False, slots=True)
class RequestPlan:
    """How to forward one request, and the request headers the access log reports.

    ``fields``: the header fields to send, as h11 takes them without normalising them again
    (name as spelled, lower-case name, value): most are h11's own, passed on from the
    request as it parsed them, so no pair is turned back into a field per request.
    ``headers``: the same fields as (name, value) pairs, for what reads or edits them (rules,
    hooks, the journal): a new list at each read, and setting it sets ``fields``. One list
    holds the fields, so what goes upstream is always what ``headers`` reads."""

    target: bytes
    fields: list[Field]
    body: BodyKind
    idempotent: bool
    upgrade: bool  # a WebSocket upgrade: Connection/Upgrade are kept for it
    peer_trusted: bool  # its True-Client-IP and X-Forwarded-For are believed
    request_id: bytes
    host: bytes
    # Applied to the final response's headers with its status (response-header rules).
    edit_response: Callable[[int, Headers], Headers] | None
    noted: dict[bytes, bytes]
    # A rule's request body limit, over limits.max_request_body_bytes (None: no rule gave one).
    max_body_bytes: int | None

    def __init__(
        self,
        target: bytes,
        fields: list[Field],
        body: BodyKind,
        idempotent: bool,
        upgrade: bool,
        peer_trusted: bool,
        request_id: bytes,
        host: bytes,
        noted: dict[bytes, bytes],
    ) -> None:
        # (Positional, by `plan_request_of`: a keyword call through the class builds a dict.)
        self.target = target
        self.fields = fields
        self.body = body
        self.idempotent = idempotent
        self.upgrade = upgrade
        self.peer_trusted = peer_trusted
        self.request_id = request_id
        self.host = host
        self.edit_response = None
        self.noted = noted
        self.max_body_bytes = None

    @property
    def headers(self) -> Headers:
        """The fields as (name, value) pairs: a new list (edit it, then set it)."""
        return [(name, value) for name, _, value in self.fields]

    @headers.setter
    def headers(self, headers: Headers) -> None:
        self.fields = lowered(headers)


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

# Every name `plan_request_of`'s loop reads, notes or drops, but those a Connection field
# lists: any other field passes on as it is.
_WATCHED_IN_PLANS = (
    NOTED_REQUEST_HEADERS
    | HOP_BY_HOP
    | _CLIENT_CLAIMS
    | {b"content-length", b"host", b"x-request-id", b"x-forwarded-for"}
)
# What a plan drops from an untrusted peer: hop-by-hop fields and claims about the client.
_DROPPED_UNTRUSTED = HOP_BY_HOP | _CLIENT_CLAIMS


def lowered(headers: Iterable[tuple[bytes, bytes]]) -> list[Field]:
    """Fields with their lower-case names, from (name, value) pairs."""
    return [(name, name.lower(), value) for name, value in headers]


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


# A lone Connection field's usual values in requests, with the names each lists (parsed once).
_USUAL_OPTIONS = {
    value: _listed_options((value,))
    for value in (
        b"keep-alive",
        b"Keep-Alive",
        b"close",
        b"Close",
        b"upgrade",
        b"Upgrade",
        b"keep-alive, Upgrade",
        b"Keep-Alive, Upgrade",
    )
}


def plan_request(
    method: bytes,
    target: bytes,
    headers: Sequence[tuple[bytes, bytes]],
    http_version: bytes,
    *,
    peer_ip: bytes,
    rules: ForwardingRules,
    upstream_authority: bytes,
    max_header_count: int,
    make_request_id: Callable[[], bytes] = new_request_id,
) -> RequestPlan:
    """`plan_request_of` for fields without their lower-case names."""
    return plan_request_of(
        method,
        target,
        lowered(headers),
        http_version,
        peer_ip=peer_ip,
        rules=rules,
        upstream_authority=upstream_authority,
        max_header_count=max_header_count,
        make_request_id=make_request_id,
    )


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
    # (Most proxies have no trusted_proxies: then no address is decoded.)
    trusted = rules.trusted_proxies is None or rules.trusts(peer_ip.decode("latin-1"))
    merge_xff = rules.append_x_forwarded_for
    # Claims about the client from a peer we do not trust go no further: the upstream hears
    # of the TCP peer only (the access log still shows what was received).
    dropped = HOP_BY_HOP if trusted else _DROPPED_UNTRUSTED
    # The names the loop does more with than pass on (most fields of a browser's request:
    # Accept, Cookie, Sec-*... are none of them, and take one set lookup).
    watched = _WATCHED_IN_PLANS
    # Most requests' Connection fields (none; keep-alive, close, upgrade) name hop-by-hop
    # fields only, dropped anyway: one pass. One that names another field (which may come
    # before it) makes the pass run again, with those fields watched and dropped.
    options = _NO_OPTIONS
    while True:
        # Every field passes on but the few the loop takes out: copied whole (in C), and
        # passed on as h11 parsed it (name, lower-case name, value), not made again.
        out = list(fields)
        noted: dict[bytes, bytes] = {}
        # (Tuples: most requests have no Connection or Upgrade field, and () is no object.)
        listed: tuple[bytes, ...] = ()  # the values of Connection fields
        offered: tuple[bytes, ...] = ()  # the values of Upgrade fields
        host: bytes | None = None  # the Host field's value
        more_hosts = False
        forwarded_for: list[bytes]  # (made at the first X-Forwarded-For merged)
        first_xff: Field | None = None  # the X-Forwarded-For the others merge into
        client_id = b""  # the client's X-Request-ID, if it sent one
        first_id: Field | None = None  # ... and its field, where ours goes
        content_length: bytes | None = None
        chunked = False
        for name, lname, value in fields:
            if lname not in watched:
                continue
            if lname == b"host":  # (nearly every request's only watched field)
                if host is None:
                    host = value
                else:
                    more_hosts = True
                continue
            if lname in NOTED_REQUEST_HEADERS:
                noted.setdefault(lname, value)
                if lname in dropped:
                    out.remove((name, lname, value))  # (the first equal one: all go alike)
                elif lname == b"x-forwarded-for" and merge_xff:
                    # Merge every X-Forwarded-For field into one at the first one's place,
                    # as nginx's $proxy_add_x_forwarded_for does, and append the peer below.
                    if first_xff is None:
                        first_xff = (name, lname, value)
                        forwarded_for = [value]
                    else:
                        forwarded_for.append(value)
                        _drop_later(out, (name, lname, value))
            elif lname in dropped:  # hop-by-hop, a claim not believed, or a listed field
                out.remove((name, lname, value))
                if lname == b"connection":
                    listed += (value,)
                elif lname == b"transfer-encoding":
                    chunked = True  # h11 accepts nothing but a single "chunked"
                elif lname == b"upgrade":
                    offered += (value,)
            elif lname == b"content-length":
                content_length = value
            elif lname == b"x-request-id":
                # One X-Request-ID travels on, at the first one's place: the client's if it
                # is well-formed, else a fresh one (filled in below).
                if first_id is None:
                    first_id = (name, lname, value)
                    client_id = value
                else:
                    client_id = b""  # (two: neither is believed)
                    _drop_later(out, (name, lname, value))
        if not listed or options:
            break
        options = _USUAL_OPTIONS.get(listed[0], _NO_OPTIONS) if len(listed) == 1 else _NO_OPTIONS
        if not options:
            options = _listed_options(listed)
        if options <= HOP_BY_HOP:
            break
        watched = watched | options
        dropped = dropped | options

    if chunked and content_length is not None:
        raise ClientError("both Content-Length and Transfer-Encoding")
    if more_hosts:
        raise ClientError("more than one Host header")
    authority = b""  # the authority an absolute-form target names
    if not target.startswith(b"/"):  # (origin-form, nearly every request: nothing to do)
        target, authority = _origin_form(target, host)
    if host is None:
        if http_version != b"1.0":
            raise ClientError("missing Host header")  # h11 rejects it first; belt and braces
        if not (authority or _AUTHORITY.fullmatch(upstream_authority)):
            # The upstream address as configured: fields go upstream unchecked by h11.
            raise UpstreamError(f"upstream address {upstream_authority!r} cannot be a Host")
        out.insert(0, (b"Host", b"host", authority or upstream_authority))

    request_id = client_id if client_id and _REQUEST_ID.fullmatch(client_id) else make_request_id()
    if rules._usual and first_id is None and first_xff is None and http_version == b"1.1":
        # (Nearly every request: our three fields, appended in one step.)
        out += (
            (b"X-Request-ID", b"x-request-id", request_id),
            (b"X-Forwarded-For", b"x-forwarded-for", peer_ip),
            rules._via_field_11,
        )
    else:
        if first_id is not None:  # (found by equality: the one X-Request-ID left)
            out[out.index(first_id)] = (first_id[0], first_id[1], request_id)
        else:
            out.append((b"X-Request-ID", b"x-request-id", request_id))
        if merge_xff:
            if first_xff is not None:
                forwarded_for.append(peer_ip)
                out[out.index(first_xff)] = (first_xff[0], first_xff[1], b", ".join(forwarded_for))
            else:
                out.append((b"X-Forwarded-For", b"x-forwarded-for", peer_ip))
        if not trusted:
            out.append((b"True-Client-IP", b"true-client-ip", peer_ip))
            noted.pop(b"true-client-ip", None)  # not believed: remote_addr is the peer
        if rules.via:  # (for HTTP/1.1: the field made once)
            out.append(
                rules._via_field_11
                if http_version == b"1.1"
                else (b"Via", b"via", rules.via_value(http_version))
            )

    # Only WebSocket is tunnelled (RFC 6455 4.1: a GET over HTTP/1.1); other protocols
    # (h2c, ...) lose their Upgrade and the request goes on as plain HTTP/1.1.
    # A body would be read by the upload task while the tunnel reads the same socket.
    upgrade = False
    if offered and b"upgrade" in options:
        upgrade = (
            any(_offers_websocket(value) for value in offered)
            and method == b"GET"
            and http_version == b"1.1"
            and not chunked
            and content_length in (None, b"0")
        )
        if upgrade:
            out += [
                (b"Connection", b"connection", b"upgrade"),
                (b"Upgrade", b"upgrade", b"websocket"),
            ]
    body = BodyKind.NONE
    if chunked:
        body = BodyKind.CHUNKED
        out.append((b"Transfer-Encoding", b"transfer-encoding", b"chunked"))
    elif content_length is not None and content_length.strip() != b"0":
        body = BodyKind.LENGTH
    return RequestPlan(
        target,
        out,
        body,
        method in IDEMPOTENT_METHODS,
        upgrade,
        trusted,
        request_id,
        authority or (host or b""),
        noted,
    )


def _drop_later(fields: list[Field], later: Field) -> None:
    """Take a later one of two equal-named fields out of ``fields``: the last field equal to
    ``later`` (the first of such fields stays where it is, even one equal to it)."""
    del fields[len(fields) - 1 - fields[::-1].index(later)]


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


# The response fields `response_fields` reads or drops; any other passes on untouched.
_READ_IN_RESPONSES = HOP_BY_HOP | {
    b"content-length",
    b"content-type",
    b"section-io-tag",
    b"x-request-id",
}

# A lone Connection field of one of these values (in any case) is not parsed: keep-alive is
# hop-by-hop already, and a field named "close" is left alone.
_USUAL_CONNECTION = frozenset({b"keep-alive", b"close"})
# ... and its usual spellings (nginx sends keep-alive with every response), as the lists of
# Connection values found, compared in one step. (Never changed.)
_USUAL_CONNECTION_LISTS = ([b"keep-alive"], [b"close"], [b"Keep-Alive"], [b"Close"])


class ResponseFields:
    """A response head as the client gets it, and what the exchange reads of the origin's
    fields: its content type and section-io-tag (for the access line), and its framing
    (``chunked``; ``has_length``: a Content-Length, which stays in the head). ``lowered``:
    the fields with their lower-case names, as h11 takes them to send without normalising
    them again; ``headers``: the same as (name, value) pairs, made when first read (a rule,
    a hook, the journal: most responses go out without them)."""

    __slots__ = ("_headers", "chunked", "content_type", "has_length", "lowered", "section_io_tag")
    _headers: Headers | None

    def __init__(
        self,
        lowered: list[Field],
        content_type: bytes,
        section_io_tag: bytes,
        chunked: bool,
        has_length: bool,
    ) -> None:
        # (No keyword-only parameters: a keyword call through the class builds a dict.)
        self.lowered = lowered
        self.content_type = content_type
        self.section_io_tag = section_io_tag
        self.chunked = chunked
        self.has_length = has_length
        self._headers = None

    @property
    def headers(self) -> Headers:
        """The fields as (name, value) pairs: the same list at every read."""
        if self._headers is None:
            self._headers = [(name, value) for name, _, value in self.lowered]
        return self._headers


def response_fields(
    headers: Sequence[tuple[bytes, bytes]],
    http_version: bytes,
    *,
    rules: ForwardingRules,
    request_id: bytes = b"",
    switching: bool = False,
) -> ResponseFields:
    """`response_fields_of` for fields without their lower-case names."""
    return response_fields_of(
        [(name, name.lower(), value) for name, value in headers],
        http_version,
        rules=rules,
        request_id=request_id,
        switching=switching,
    )


def response_fields_of(
    fields: Sequence[Field],
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
    # Every field is kept but the few read below: copied whole (in C), those few taken out.
    # (A copy: h11's own list stays the response's, which the body relay reads again.)
    lowered = list(fields)
    content_type = section_io_tag = b""
    has_length = chunked = False
    listed: list[bytes] = []  # the values of Connection fields
    read = _READ_IN_RESPONSES
    for item in fields:
        if item[1] not in read:  # (most fields: Date, Server, ETag...: one set lookup)
            continue
        lname = item[1]
        # (The likeliest first: nginx's Content-Length, Content-Type and Connection.)
        if lname == b"content-length":
            has_length = True
        elif lname == b"content-type":
            if not content_type:
                content_type = item[2]
        elif lname == b"connection":
            listed.append(item[2])
            lowered.remove(item)  # (the first equal field: dropped alike, the same list)
        elif lname == b"transfer-encoding":
            chunked = True
            lowered.remove(item)
        elif lname == b"section-io-tag":
            if not section_io_tag:
                section_io_tag = item[2]
        elif lname != b"x-request-id" or request_id:  # hop-by-hop, or the ID we set below
            lowered.remove(item)
    if chunked and has_length:  # (chunked first: nearly never)
        raise UpstreamError("upstream response has both Content-Length and Transfer-Encoding")
    # (Usually one "keep-alive" or "close", hop-by-hop already: then nothing more to drop.)
    if (
        listed
        and listed not in _USUAL_CONNECTION_LISTS
        and (len(listed) > 1 or listed[0].lower() not in _USUAL_CONNECTION)
    ):
        options = _listed_options(listed)
        if options - HOP_BY_HOP:
            lowered = [item for item in lowered if item[1] not in options]
    if switching:  # a 101 for our WebSocket upgrade: the switch itself is end-to-end
        lowered += [
            (b"Connection", b"connection", b"upgrade"),
            (b"Upgrade", b"upgrade", b"websocket"),
        ]
    if request_id:  # the client learns the ID its request is logged under
        lowered.append((b"X-Request-ID", b"x-request-id", request_id))
    if rules.via:  # (the field made once, without a call, for nearly every response)
        if http_version == b"1.1":
            lowered.append(rules._via_field_11)
        else:
            lowered.append((b"Via", b"via", rules.via_value(http_version)))
    return ResponseFields(lowered, content_type, section_io_tag, chunked, has_length)


def response_headers(
    headers: Sequence[tuple[bytes, bytes]],
    http_version: bytes,
    *,
    rules: ForwardingRules,
    request_id: bytes = b"",
    switching: bool = False,
) -> Headers:
    """`response_fields`' headers alone (interim responses, the 101)."""
    return response_fields(
        headers, http_version, rules=rules, request_id=request_id, switching=switching
    ).headers


def trailer_headers(
    headers: Sequence[tuple[bytes, bytes]], head: Sequence[tuple[bytes, bytes]] = ()
) -> Headers:
    """Trailer fields safe to pass on: no framing, routing or hop-by-hop fields, nor any the
    message's head lists in Connection (RFC 9110 7.6.1: "header or trailer fields")."""
    dropped = _FORBIDDEN_IN_TRAILERS | connection_options(head)
    return [(name, value) for name, value in headers if name.lower() not in dropped]


def header_value(headers: Sequence[tuple[bytes, bytes]], lname: bytes) -> bytes:
    """The first value of a header (by lower-case name), or b""."""
    for name, value in headers:
        if name.lower() == lname:
            return value
    return b""


def field_value(fields: Sequence[Field], lname: bytes) -> bytes:
    """`header_value` of fields with their lower-case names."""
    for item in fields:
        if item[1] == lname:
            return item[2]
    return b""


# The proxy's own plain-text answers (errors, rule answers, the admin endpoints).
TEXT_PLAIN = b"text/plain; charset=utf-8"

_STANDARD_REASONS = {status.value: status.phrase.encode("ascii") for status in HTTPStatus}


def reason_phrase(status: int, given: bytes) -> bytes:
    """The upstream's reason phrase, or the standard one where it sent none (hypercorn sends
    none); clients ignore it (RFC 9112 4), people reading responses do not."""
    return given or _STANDARD_REASONS.get(status, b"")
