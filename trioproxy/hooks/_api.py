"""What a hook sees and what it may ask for: frozen views, and the exchange's edit requests.

Pure (no trio): a hook's requests are checked here when it makes them, so a hook can never
break framing or the smuggling defences. It cannot set ``Content-Length``,
``Transfer-Encoding`` or a hop-by-hop field, cannot put a control character in a value, and
an answer it makes is framed by the proxy. A refused request raises `HookError` in the hook,
naming what was refused; left uncaught, it is the hook's error (``on_error`` applies).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ..core._accesslog import ACCESS_LOG_FIELDS
from ..core._answers import text_response
from ..core._headers import HOP_BY_HOP
from ..core._requestview import view_of
from ..core._rulemodel import HeaderOp, OpKind, Response

__all__ = ["Exchange", "HookError", "Request", "ResponseHead"]

Fields = tuple[tuple[str, str], ...]


class HookError(ValueError):
    """A hook asked for something the proxy refuses (the message says what, and why)."""


def _lookup(headers: Fields, name: str) -> str | None:
    lname = name.lower()
    for key, value in headers:
        if key.lower() == lname:
            return value
    return None


_NO_CAPTURES: Mapping[str, str] = MappingProxyType({})
_NO_FIELDS: Mapping[str, str] = MappingProxyType({})


class Request:
    """The request as the rules saw it, after the strict checks (immutable).

    ``path`` is normalised the way origins read it (``/a/%2e%2e//admin`` is ``/admin``);
    ``target`` is exactly as received. ``headers`` are the ``(name, value)`` pairs as received,
    in order. ``client`` is the client's address after the trusted-proxy logic
    (True-Client-IP from a trusted peer, else the TCP peer); ``scheme`` is "https" when
    X-Forwarded-Proto says so. ``captures`` holds the rule's ``match.path_regex`` groups, by
    number ("0", "1", ...) and by name. Text is decoded as Latin-1, so every byte received is
    kept. (The proxy makes one only when a hook reads ``exchange.request``, and decodes only
    what the hook reads.)
    """

    __slots__ = ("_source", "_values")

    def __init__(
        self,
        method: str,
        path: str,
        target: str,
        headers: Fields,
        client: str,
        scheme: str,
        request_id: str,
        captures: Mapping[str, str] = _NO_CAPTURES,
    ) -> None:
        self._source: RequestSource | None = None
        self._values: dict[str, Any] = {
            "method": method,
            "path": path,
            "target": target,
            "headers": tuple(headers),
            "client": client,
            "scheme": scheme,
            "request_id": request_id,
            "captures": MappingProxyType(dict(captures)),
        }

    @classmethod
    def _of(cls, source: RequestSource) -> Request:
        """From the rules' `RequestView` (made now if the rules needed none), decoding
        nothing until it is read."""
        request = cls.__new__(cls)
        view, captures, request_id = source
        request._source, request._values = (view_of(view), captures, request_id), {}
        return request

    def _get(self, name: str) -> Any:
        values = self._values
        if name not in values:
            values[name] = _DECODE[name](self._source)
        return values[name]

    @property
    def method(self) -> str:
        return str(self._get("method"))

    @property
    def path(self) -> str:
        """Normalised, without the query."""
        return str(self._get("path"))

    @property
    def target(self) -> str:
        """As received."""
        return str(self._get("target"))

    @property
    def headers(self) -> Fields:
        """``(name, value)`` pairs, in order, as received."""
        headers: Fields = self._get("headers")
        return headers

    @property
    def client(self) -> str:
        """The client's address, after the trusted-proxy logic."""
        return str(self._get("client"))

    @property
    def scheme(self) -> str:
        return str(self._get("scheme"))

    @property
    def request_id(self) -> str:
        return str(self._get("request_id"))

    @property
    def captures(self) -> Mapping[str, str]:
        """The rule's ``match.path_regex`` groups, by number and by name."""
        captures: Mapping[str, str] = self._get("captures")
        return captures

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target[:80]!r} from {self.client}>"

    @property
    def query(self) -> str:
        """After the "?" of the target; "" when there is none."""
        return self.target.partition("?")[2]

    def header(self, name: str) -> str | None:
        """The first field of this name (any case), or None."""
        return _lookup(self.headers, name)

    def cookie(self, name: str) -> str | None:
        """A cookie's value from the Cookie fields, or None."""
        for key, value in self.headers:
            if key.lower() == "cookie":
                for pair in value.split(";"):
                    cookie, equals, found = pair.strip().partition("=")
                    if equals and cookie == name:
                        return found
        return None


def _texts(headers: Any) -> Fields:
    return tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in headers)


def _captures(match: re.Match[bytes] | None) -> Mapping[str, str]:
    if match is None:
        return _NO_CAPTURES
    groups = {str(i): (match.group(i) or b"").decode("latin-1") for i in range(match.re.groups + 1)}
    groups.update((k, (v or b"").decode("latin-1")) for k, v in match.groupdict().items())
    return MappingProxyType(groups)


# What a `Request` is made of when the proxy makes it: the rules' `RequestView` (or what to
# make it of, when the rules needed none: `ViewSource`), the rule's path_regex match, and the
# request ID (as bytes).
RequestSource = tuple[Any, "re.Match[bytes] | None", bytes]

_DECODE: dict[str, Callable[[Any], Any]] = {
    "method": lambda source: source[0].method.decode("latin-1"),
    "path": lambda source: source[0].path.decode("latin-1"),
    "target": lambda source: source[0].target.decode("latin-1"),
    "headers": lambda source: _texts(source[0].headers),
    "client": lambda source: source[0].client_ip,
    "scheme": lambda source: source[0].scheme.decode("latin-1"),
    "request_id": lambda source: source[2].decode("ascii", "replace"),
    "captures": lambda source: _captures(source[1]),
}


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """The response head from the origin, as the client would get it (immutable)."""

    status: int
    headers: Fields

    def header(self, name: str) -> str | None:
        return _lookup(self.headers, name)


# RFC 9110 5.6.2 and 5.5: a field name is a token; no control character but HTAB in a value.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_MANAGED = HOP_BY_HOP | {b"content-length"}
_LOG_FIELD = re.compile(r"[a-z][a-z0-9_]{0,63}")
_TARGET = re.compile(r"/[\x21-\x7e]*")
_MAX_BODY = 1 << 20
_MAX_VALUE = 8192
# Fields a request's hooks may add to its access line: a line stays one short write, and no
# hook can make the log writer's queue hold more than this per request.
MAX_LOG_FIELDS = 16
MAX_LOG_BYTES = 8192


def _name(name: str, *, request: bool, kind: OpKind) -> bytes:
    if not isinstance(name, str) or not _TOKEN.fullmatch(name):
        raise HookError(f"header name {name!r} is not a token (RFC 9110 5.6.2)")
    lname = name.lower().encode("ascii")
    if lname in _MANAGED:
        raise HookError(f"{name} is managed by the proxy (framing, hop-by-hop)")
    if lname == b"host" and (not request or kind is not OpKind.SET):
        raise HookError("Host can only be set, on the request")
    return name.encode("ascii")


def _value(name: str, value: str) -> bytes:
    if not isinstance(value, str):
        raise HookError(f"{name}: the value must be a str, found {type(value).__name__}")
    if _CONTROL.search(value) or len(value) > _MAX_VALUE:
        raise HookError(f"{name}: a value has no control characters and at most 8192 characters")
    try:
        return value.strip(" \t").encode("latin-1")
    except UnicodeEncodeError:
        raise HookError(f"{name}: a value must be Latin-1 text (percent-encode the rest)") from None


class Exchange:
    """One request's passage through one hook: what the hook points of that hook receive.

    ``request`` is the immutable view; ``state`` a dict the hook may use to carry values from
    one of its hook points to the next for this request. The methods ask the proxy to do
    something; each checks its arguments at once and raises `HookError` if refused.
    """

    # The proxy makes one per hook call on the request path: what a hook may never ask for
    # (the request view, the state dict, the edit lists) is made only when first used.
    __slots__ = (
        "_answer",
        "_asks",
        "_fields",
        "_hook",
        "_phase",
        "_req",
        "_request_ops",
        "_response_ops",
        "_state",
        "_target",
        "hook",
    )

    def __init__(self, request: Request | RequestSource, hook: str = "", _hook: Any = None) -> None:
        """``request``, or (from the proxy) what it is made of, when first read; ``_hook``
        is the proxy's note of the hook this exchange runs."""
        self._req = request
        self.hook = hook
        self._hook = _hook
        self._state: dict[str, Any] | None = None
        self._answer: Response | None = None
        self._target: bytes | None = None
        self._request_ops: list[HeaderOp] | tuple[()] = ()  # a list from the first edit
        self._response_ops: list[HeaderOp] | tuple[()] = ()  # a list from the first edit
        self._fields: Mapping[str, str] = _NO_FIELDS
        self._phase = "request"  # then "response", then "access"
        # Whether it asked for anything (an answer, a rewrite, an edit, a log field): set by
        # each request, so that the proxy reads one attribute, not the five, per call.
        self._asks = False

    @property
    def request(self) -> Request:
        request = self._req
        if type(request) is tuple:
            request = self._req = Request._of(request)
        assert isinstance(request, Request)
        return request

    @property
    def state(self) -> dict[str, Any]:
        state = self._state
        if state is None:
            state = self._state = {}
        return state

    @state.setter
    def state(self, value: dict[str, Any]) -> None:
        self._state = value

    def __repr__(self) -> str:
        return f"<Exchange {self.hook} {self.request.method} {self.request.target[:80]!r}>"

    def _forget(self) -> None:
        """A failed hook with on_error "pass": as if it had asked for nothing (its log
        fields stay)."""
        self._answer = self._target = None
        self._request_ops = self._response_ops = ()
        self._asks = bool(self._fields)

    # --- answering ---

    def respond(
        self,
        status: int,
        body: bytes | str = b"",
        headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    ) -> None:
        """Answer with this instead of the origin (on the request: the origin is not asked;
        on the response head: its response is dropped). A str body is sent as UTF-8 with
        ``Content-Type: text/plain; charset=utf-8`` unless ``headers`` give a type. The
        proxy adds the framing (Content-Length) itself."""
        if self._phase == "access":
            raise HookError("respond() on the access line: the response has been sent")
        if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
            raise HookError(f"status must be an int from 200 to 599, found {status!r}")
        fields = []
        items = headers.items() if isinstance(headers, Mapping) else headers
        for name, value in items:
            fields.append((_name(name, request=False, kind=OpKind.ADD), _value(name, value)))
        if isinstance(body, str):
            body = body.encode("utf-8")
            if not any(name.lower() == b"content-type" for name, _ in fields):
                fields.append((b"Content-Type", b"text/plain; charset=utf-8"))
        if not isinstance(body, bytes) or len(body) > _MAX_BODY:
            raise HookError("body must be bytes or str of at most 1 MiB")
        if status in (204, 304) and body:
            raise HookError(f"a {status} response has no body")
        self._answer = text_response(status, tuple(fields), body)
        self._asks = True

    # --- the request on its way ---

    def rewrite(self, target: str) -> None:
        """Forward to this origin-form target ("/path?query") instead of the received one."""
        self._before_forwarding("rewrite()")
        if not isinstance(target, str) or not _TARGET.fullmatch(target) or len(target) > 8192:
            raise HookError(f"target must be origin-form printable ASCII ('/...'): {target!r}")
        self._target = target.encode("ascii")
        self._asks = True

    def set_request_header(self, name: str, value: str) -> None:
        """Replace every field of the name with this one (or add it)."""
        self._request(OpKind.SET, name, value)

    def add_request_header(self, name: str, value: str) -> None:
        self._request(OpKind.ADD, name, value)

    def remove_request_header(self, name: str) -> None:
        self._request(OpKind.REMOVE, name, "")

    # --- the response on its way ---

    def set_response_header(self, name: str, value: str) -> None:
        self._response(OpKind.SET, name, value)

    def add_response_header(self, name: str, value: str) -> None:
        self._response(OpKind.ADD, name, value)

    def remove_response_header(self, name: str) -> None:
        self._response(OpKind.REMOVE, name, "")

    # --- the access line ---

    def log(self, name: str, value: str) -> None:
        """Add a field to this request's access line (lower-case name; not a built-in one)."""
        if not isinstance(name, str) or not _LOG_FIELD.fullmatch(name):
            raise HookError(f"log field {name!r}: expected [a-z][a-z0-9_]*, at most 64")
        if name in ACCESS_LOG_FIELDS:
            raise HookError(f"log field {name!r} is one of the proxy's own fields")
        if not isinstance(value, str) or len(value) > _MAX_VALUE:
            raise HookError(f"log field {name}: the value must be a str of at most 8192")
        fields = {**self._fields, name: value}
        if len(fields) > MAX_LOG_FIELDS or sum(map(len, fields.values())) > MAX_LOG_BYTES:
            raise HookError(
                f"log field {name}: a request's hooks add at most {MAX_LOG_FIELDS} fields"
                f" of {MAX_LOG_BYTES} characters in all"
            )
        self._fields = fields
        self._asks = True

    # --- what the engine reads ---

    def _before_forwarding(self, what: str) -> None:
        if self._phase != "request":
            raise HookError(f"{what} on the {self._phase}: the request has been forwarded")

    def _request(self, kind: OpKind, name: str, value: str) -> None:
        self._before_forwarding(f"editing request header {name}")
        encoded = _name(name, request=True, kind=kind)
        op = HeaderOp(kind, encoded, _value(name, value))
        ops = self._request_ops
        if isinstance(ops, list):
            ops.append(op)  # (not a new tuple per edit: a hook's many edits stay linear)
        else:
            self._request_ops = [op]
        self._asks = True

    def _response(self, kind: OpKind, name: str, value: str) -> None:
        if self._phase == "access":
            raise HookError(f"editing response header {name} on the access line: already sent")
        encoded = _name(name, request=False, kind=kind)
        op = HeaderOp(kind, encoded, _value(name, value))
        ops = self._response_ops
        if isinstance(ops, list):
            ops.append(op)  # (linear, as the request's edits)
        else:
            self._response_ops = [op]
        self._asks = True
