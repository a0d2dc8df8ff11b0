"""Hypothesis strategies: valid HTTP/1.1 messages built from the RFC 9112 grammar, and the
hostile variants of them (byte mutations, odd line endings, framing gadgets, plain noise).

A valid message is a dataclass that renders itself to bytes and says what a correct proxy
must deliver (method, target, end-to-end fields, body, trailers), so properties can compare
both ends of the proxy without a parser of their own.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from hypothesis import strategies as st

Fields = list[tuple[bytes, bytes]]

TCHAR = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# RFC 3986 pchar plus "/" and "?": what an origin-form target is made of.
PCHAR = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@%/"
# RFC 9110 5.5 field-vchar (VCHAR and obs-text) as latin-1 text, and the whitespace inside.
VCHAR = "".join(map(chr, [*range(0x21, 0x7F), *range(0x80, 0x100)]))

# Framing and routing fields, the proxy's own fields and every hop-by-hop field: generated
# end-to-end fields avoid these names, which the properties treat on their own.
RESERVED = frozenset(
    {
        b"host",
        b"content-length",
        b"transfer-encoding",
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"upgrade",
        b"proxy-authorization",
        b"proxy-authenticate",
        b"x-forwarded-for",
        b"x-request-id",
        b"via",
        b"expect",
    }
)
# Written out again on purpose, not imported from trioproxy.core._headers: the oracle must not
# change when the code under test does.
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


def _latin1(text: str) -> bytes:
    return text.encode("latin-1")


tokens = st.text(TCHAR, min_size=1, max_size=12).map(_latin1)
field_names = tokens.filter(lambda name: name.lower() not in RESERVED)
# field-value = *( field-vchar [ 1*( SP / HTAB ) field-vchar ] ): no whitespace at either end.
field_values = st.text(VCHAR + " \t", max_size=24).map(lambda v: _latin1(v.strip(" \t")))
end_to_end_fields = st.lists(st.tuples(field_names, field_values), max_size=8)
methods = st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"HEAD"]) | (
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=3, max_size=8)
    .map(_latin1)
    .filter(lambda m: m not in (b"CONNECT", b"PRI"))
)
targets = st.text(PCHAR, max_size=30).map(lambda p: b"/" + _latin1(p).replace(b"%", b"%25")) | (
    st.tuples(st.text(PCHAR, max_size=10), st.text(PCHAR + "?", max_size=15)).map(
        lambda pq: (
            b"/"
            + _latin1(pq[0]).replace(b"%", b"%25")
            + b"?"
            + _latin1(pq[1]).replace(b"%", b"%25")
        )
    )
)
hosts = st.sampled_from([b"shop.test", b"a.b.c.test:8080", b"[::1]", b"localhost", b""])
chunk_exts = st.lists(
    st.tuples(
        tokens,
        st.none()
        | tokens
        | st.text(TCHAR + " ", max_size=6).map(lambda q: b'"' + _latin1(q) + b'"'),
    ),
    max_size=2,
).map(lambda exts: b"".join(b";" + n + (b"=" + v if v is not None else b"") for n, v in exts))
trailer_fields = st.lists(
    st.tuples(
        field_names.filter(lambda n: n.lower() not in (b"content-length", b"host")), field_values
    ),
    max_size=3,
)


@dataclass
class Body:
    """A message body and how it is framed: "none", "length" or "chunked"."""

    framing: str = "none"
    chunks: list[bytes] = field(default_factory=list)
    exts: list[bytes] = field(default_factory=list)
    trailers: Fields = field(default_factory=list)

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)

    def framing_fields(self) -> Fields:
        if self.framing == "length":
            return [(b"Content-Length", b"%d" % len(self.data))]
        if self.framing == "chunked":
            return [(b"Transfer-Encoding", b"chunked")]
        return []

    def render(self) -> bytes:
        if self.framing != "chunked":
            return self.data
        out = [
            b"%x%s\r\n%s\r\n" % (len(c), e, c) for c, e in zip(self.chunks, self.exts, strict=True)
        ]
        out.append(b"0\r\n" + b"".join(n + b": " + v + b"\r\n" for n, v in self.trailers) + b"\r\n")
        return b"".join(out)


@st.composite
def bodies(draw: st.DrawFn, *, framings: tuple[str, ...] = ("none", "length", "chunked")) -> Body:
    framing = draw(st.sampled_from(framings))
    if framing == "none":
        return Body()
    chunks = draw(st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=4))
    if framing == "length":
        return Body("length", chunks)
    exts = draw(st.lists(chunk_exts, min_size=len(chunks), max_size=len(chunks)))
    return Body("chunked", chunks, exts, draw(trailer_fields))


@dataclass
class Request:
    method: bytes
    target: bytes
    host: bytes
    fields: Fields  # end-to-end fields, in order
    body: Body
    hop_fields: Fields = field(default_factory=list)  # hop-by-hop ones, mixed in on render
    version: bytes = b"1.1"

    def render(self) -> bytes:
        lines = [b"%s %s HTTP/%s" % (self.method, self.target, self.version), b"Host: " + self.host]
        lines += [
            n + b": " + v for n, v in self.fields + self.hop_fields + self.body.framing_fields()
        ]
        return b"\r\n".join(lines) + b"\r\n\r\n" + self.body.render()

    def dropped_names(self) -> frozenset[bytes]:
        """The names a proxy must not forward: hop-by-hop ones and those Connection lists."""
        listed = {
            option.strip().lower()
            for name, value in self.hop_fields
            if name.lower() == b"connection"
            for option in value.split(b",")
        }
        return HOP_BY_HOP | listed

    def forwarded_fields(self) -> Fields:
        dropped = self.dropped_names()
        return [(n, v) for n, v in self.fields if n.lower() not in dropped]


@st.composite
def hop_by_hop_fields(draw: st.DrawFn) -> Fields:
    """Connection with extra options and the fields it names, plus the standard hop-by-hop
    fields (not Upgrade: websocket, which the proxy tunnels)."""
    options = draw(st.lists(field_names, max_size=3))
    out: Fields = []
    if bool(options) or draw(st.booleans()):
        keep = draw(st.sampled_from([[], [b"keep-alive"], [b"TE"], [b"Upgrade"]]))
        out.append((b"Connection", b", ".join(keep + options)))
    out += [(name, draw(field_values)) for name in options]
    extra = draw(
        st.sets(
            st.sampled_from(
                [
                    b"Keep-Alive",
                    b"Proxy-Connection",
                    b"TE",
                    b"Trailer",
                    b"Upgrade",
                    b"Proxy-Authorization",
                ]
            )
        )
    )
    values = {b"Upgrade": b"h2c", b"TE": b"trailers", b"Keep-Alive": b"timeout=5"}
    out += [(name, values.get(name, b"x")) for name in sorted(extra)]
    return draw(st.permutations(out))


@st.composite
def requests(draw: st.DrawFn, *, hop_by_hop: bool = False) -> Request:
    method = draw(methods)
    body = draw(bodies() if method not in (b"GET", b"HEAD") else bodies(framings=("none",)))
    request = Request(method, draw(targets), draw(hosts), draw(end_to_end_fields), body)
    if hop_by_hop:
        request.hop_fields = draw(hop_by_hop_fields())
    return request


@dataclass
class Response:
    status: int
    reason: bytes
    fields: Fields
    body: Body
    hop_fields: Fields = field(default_factory=list)

    def render(self) -> bytes:
        lines = [b"HTTP/1.1 %d %s" % (self.status, self.reason)]
        lines += [
            n + b": " + v for n, v in self.fields + self.hop_fields + self.body.framing_fields()
        ]
        return b"\r\n".join(lines) + b"\r\n\r\n" + self.body.render()


@st.composite
def responses(draw: st.DrawFn, *, hop_by_hop: bool = False) -> Response:
    status = draw(
        st.sampled_from([200, 201, 204, 206, 301, 304, 400, 403, 404, 410, 418, 500, 503])
    )
    bodyless = status in (204, 304)
    body = draw(bodies(framings=("none",) if bodyless else ("length", "chunked")))
    reason = draw(st.sampled_from([b"OK", b"", b"Whatever It Is", b"D\xe9j\xe0 vu"]))
    hop = draw(hop_by_hop_fields()) if hop_by_hop else []
    hop = [(n, v) for n, v in hop if n.lower() not in (b"upgrade", b"te")] if bodyless else hop
    return Response(status, reason, draw(end_to_end_fields), body, hop)


def cut(data: bytes, points: list[int]) -> list[bytes]:
    """``data`` split at ``points`` (any ints; taken modulo its length)."""
    marks = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(marks) if b > a]


split_points = st.lists(st.integers(min_value=0), max_size=8)

# Mutations a hostile peer makes to a valid message.
_GADGETS = [
    b"\n",
    b"\r",
    b"\r\n",
    b" ",
    b"\t",
    b"\x00",
    b"\x0b",
    b"\x7f",
    b":",
    b";",
    b",",
    b"\xff",
    b"\r\n ",
    b"\r\nTransfer-Encoding: chunked",
    b"\r\nContent-Length: 0",
    b"\r\nContent-Length: 5",
    b"\r\nHost: other.test",
    b"\r\nTransfer-Encoding: gzip, chunked",
    b"0\r\n\r\n",
    b"\r\nConnection: content-length",
    b"HTTP/1.1",
    b"HTTP/1.0",
    b"HTTP/2.0",
]


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    data = draw(base)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["insert", "delete", "replace", "crlf", "truncate"]))
        if kind == "insert":
            data = (
                data[:at]
                + draw(st.sampled_from(_GADGETS) | st.binary(min_size=1, max_size=3))
                + data[at:]
            )
        elif kind == "delete":
            data = data[:at] + data[at + draw(st.integers(1, 4)) :]
        elif kind == "replace" and at < len(data):
            data = data[:at] + draw(st.binary(min_size=1, max_size=1)) + data[at + 1 :]
        elif kind == "crlf":
            data = data.replace(
                b"\r\n",
                draw(st.sampled_from([b"\n", b"\r", b"\r\r\n", b"\n\r"])),
                draw(st.integers(1, 3)),
            )
        else:
            data = data[:at]
    return data


def hostile(valid: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Noise, valid messages, and valid messages with a few hostile mutations."""
    return st.one_of(st.binary(max_size=400), valid, mutated(valid))
