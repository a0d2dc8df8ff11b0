"""Two reference parsers for the properties: h11 and llhttp (Node's parser, via httptools,
whose lenient flags are all off by default). Each returns what it read, or None if it
rejected the bytes or found them incomplete.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import h11
import httptools

Fields = list[tuple[bytes, bytes]]
_BIG = 1 << 22


@dataclass
class Read:
    """One message as a parser read it: start line, fields (names lower-cased), body."""

    start: tuple[bytes, ...]
    fields: Fields
    body: bytes = b""
    trailers: Fields = field(default_factory=list)
    complete: bool = True


def _lower(fields: Fields) -> Fields:
    return [(bytes(n).lower(), bytes(v)) for n, v in fields]


def h11_request(data: bytes) -> Read | None:
    """The first request h11 reads from ``data``: its head, and its body if complete."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_BIG)
    conn.receive_data(data)
    return _h11_read(conn)


def _h11_read(conn: h11.Connection) -> Read | None:
    """The first message (request, or final response) ``conn`` reads: its head, and its body
    if complete; None if h11 rejects the bytes."""
    read: Read | None = None
    body = bytearray()
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
                if read is not None:
                    read.body, read.complete = bytes(body), False
                return read
            if isinstance(event, h11.Request):
                read = Read((event.method, event.target), _lower(list(event.headers.raw_items())))
            elif isinstance(event, h11.Response):
                read = Read((b"%d" % event.status_code,), _lower(list(event.headers.raw_items())))
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage) and read is not None:
                read.body = bytes(body)
                read.trailers = _lower(list(event.headers.raw_items()))
                return read
    except h11.RemoteProtocolError:
        return None


class _Sink:
    def __init__(self) -> None:
        self.url = b""
        self.fields: Fields = []
        self.trailers: Fields = []
        self.body = bytearray()
        self.head_done = False
        self.done = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        (self.trailers if self.head_done else self.fields).append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.done = True


def llhttp_request(data: bytes, *, lenient_method: bool = True) -> Read | None:
    """The first request llhttp reads. llhttp knows only registered methods; with
    ``lenient_method`` an unknown token method is read as GET's stand-in, as the conformance
    harness does (h11 and we accept any token: RFC 9110 9.1)."""
    method = data.split(b" ", 1)[0]
    if lenient_method and method not in _LLHTTP_METHODS and method and method != b"PRI":
        data = b"GET" + data[len(method) :]
    sink = _Sink()
    parser = httptools.HttpRequestParser(sink)
    try:
        parser.feed_data(data)
    except httptools.HttpParserUpgrade:
        pass  # llhttp stops at an Upgrade/CONNECT head; what it read so far stands
    except httptools.HttpParserError:
        if not sink.done:  # an error in bytes after a complete message is not this one's
            return None
    if not sink.head_done:
        return None
    start = (method if lenient_method else parser.get_method(), sink.url)
    return Read(start, sink.fields, bytes(sink.body), sink.trailers, sink.done)


_LLHTTP_METHODS = frozenset(
    b"DELETE GET HEAD POST PUT CONNECT OPTIONS TRACE COPY LOCK MKCOL MOVE PROPFIND PROPPATCH "
    b"SEARCH UNLOCK BIND REBIND UNBIND ACL REPORT MKACTIVITY CHECKOUT MERGE M-SEARCH NOTIFY "
    b"SUBSCRIBE UNSUBSCRIBE PATCH PURGE MKCALENDAR LINK UNLINK SOURCE QUERY".split()
)


def h11_response(data: bytes, *, eof: bool = True) -> Read | None:
    """The final response h11 reads from ``data`` (after any 1xx), answering a GET."""
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=_BIG)
    conn.send(h11.Request(method=b"GET", target=b"/", headers=[(b"Host", b"x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    if eof:
        conn.receive_data(b"")
    return _h11_read(conn)


def llhttp_response(data: bytes) -> Read | None:
    """The final response llhttp reads (1xx heads are skipped, as a client would). httptools
    cannot signal EOF, so a body delimited by the close reads as incomplete."""
    while True:
        sink = _Sink()
        parser = httptools.HttpResponseParser(sink)
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            return None
        except httptools.HttpParserError:
            if not sink.done:  # an error in bytes after a complete message is not this one's
                return None
        if not sink.head_done:
            return None
        status = parser.get_status_code()
        if 100 <= status < 200 and sink.done:
            # Skip the 1xx head and read on: its end is the first blank line.
            data = data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else b""
            continue
        return Read((b"%d" % status,), sink.fields, bytes(sink.body), sink.trailers, sink.done)
