"""Request rules (``[[rules]]`` in trioproxy.toml): match a request, decide what to do with it.

Pure: no I/O and no trio. The engine builds a `RequestView` from a request head, asks
`RuleEngine.evaluate` for a `Decision`, and carries it out: answer at once, or forward with
the rewritten target and edited request headers, then edit the response headers.

Semantics, in one place:

- Rules are tried in file order; a rule matches when every condition it gives holds.
- Header edits and rewrites of every matching rule accumulate in order (the first matching
  rewrite wins: put specific rules before general ones, as for answers).
- The first answer ends evaluation: a redirect, a deny (including a client outside an
  ``allow`` list), a static response, or a 429 from an exhausted rate limit. Response-header
  edits of the rules tried so far, and of the answering rule, apply to that answer.
- Conditions always see the request as received (a rewrite does not feed later rules), with
  the path normalised the way origins read it (`normalize_path`): ``/a/%2e%2e//admin`` is
  ``/admin`` to every rule, so a deny on ``/admin`` cannot be walked around.
- The platform's health checks (paths under ``/.well-known/section-io/aee-hc/``) and
  asterisk-form requests (``OPTIONS *``) always pass untouched.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from http import HTTPStatus
from typing import Final, NamedTuple, Protocol

from ._ratelimit import TokenBuckets, retry_after_s

__all__ = [
    "HEALTH_CHECK_PREFIX",
    "PASS",
    "CidrSet",
    "Decision",
    "HeaderCondition",
    "HeaderOp",
    "Match",
    "OpKind",
    "RateLimit",
    "Redirect",
    "RequestView",
    "Response",
    "ResponseEdit",
    "Rule",
    "RuleEngine",
    "RuleSet",
    "Template",
    "TemplatePart",
    "Var",
    "apply_header_ops",
    "client_address",
    "normalize_escapes",
    "normalize_path",
    "request_view",
    "text_response",
]

Headers = list[tuple[bytes, bytes]]

# The platform probes every proxy in the chain here; a rule must never answer for the origin.
HEALTH_CHECK_PREFIX: Final = b"/.well-known/section-io/aee-hc/"


# --- The request as rules see it ---------------------------------------------------------------


class RequestView(NamedTuple):
    """One request head, as the rules see it. Build it with `request_view`.

    A named tuple rather than a frozen dataclass: it is made for every request, and a frozen
    dataclass pays for one object.__setattr__ per field.
    """

    method: bytes
    target: bytes  # as received, origin-form: `$request_uri`
    path: bytes  # normalised (`normalize_path`), without the query
    query: bytes  # after "?", b"" when there is none
    host: bytes  # Host, lower-case, without port or trailing dot; b"" when missing or odd
    headers: Sequence[tuple[bytes, bytes]]  # as received: conditions look names up
    client_ip: str  # True-Client-IP from a trusted peer, else the TCP peer
    scheme: bytes  # b"https" when X-Forwarded-Proto says so, else b"http"


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
    host = true_client_ip = forwarded_proto = b""
    for name, value in headers:
        # Only three names matter here; comparing lengths first spares lower() on the rest.
        if len(name) in _VIEW_NAME_LENGTHS:
            lname = name.lower()
            if lname == b"host":
                host = value
            elif lname == b"true-client-ip" and not true_client_ip:
                true_client_ip = value
            elif lname == b"x-forwarded-proto" and not forwarded_proto:
                forwarded_proto = value
    raw_path, _, query = target.partition(b"?")
    # The platform sets True-Client-IP to the client it vouches for; the TCP peer is the
    # previous proxy in the chain (README, "Logs").
    believed = true_client_ip and peer_trusted
    client_ip = true_client_ip.decode("latin-1").strip() if believed else peer_ip
    scheme = b"https" if forwarded_proto.strip().lower() == b"https" else b"http"
    # Positional: a named tuple built from keywords costs twice as much.
    path, host = normalize_path(raw_path), _clean_host(host)
    return RequestView(method, target, path, query, host, headers, client_ip, scheme)


_VIEW_NAME_LENGTHS = frozenset({len(b"host"), len(b"true-client-ip"), len(b"x-forwarded-proto")})

# Host names and IP literals only: `$host` goes into Location headers, so nothing else may
# come through (a Host of "evil.test/x@" must not become part of a redirect).
_HOST = re.compile(rb"([a-z0-9._-]+|\[[0-9a-f:.]+\])(?::[0-9]*)?")


@lru_cache(maxsize=256)  # a site has a few names; strangers' Host values just churn it
def _clean_host(value: bytes) -> bytes:
    match = _HOST.fullmatch(value.strip().lower())
    return match.group(1).rstrip(b".") if match else b""


_PERCENT = re.compile(rb"%([0-9A-Fa-f]{2})")
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


# --- What rules are made of --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CidrSet:
    """IP networks, checked in one set lookup per distinct prefix length."""

    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    # (bits to shift an address right, the networks' prefixes of that length), per version.
    _v4: tuple[tuple[int, frozenset[int]], ...] = field(init=False, repr=False, compare=False)
    _v6: tuple[tuple[int, frozenset[int]], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_v4", self._by_length(4, 32))
        object.__setattr__(self, "_v6", self._by_length(6, 128))

    def _by_length(self, version: int, width: int) -> tuple[tuple[int, frozenset[int]], ...]:
        prefixes: dict[int, set[int]] = {}
        for network in self.networks:
            if network.version == version:
                shift = width - network.prefixlen
                prefixes.setdefault(shift, set()).add(int(network.network_address) >> shift)
        return tuple((shift, frozenset(values)) for shift, values in sorted(prefixes.items()))

    def contains(self, client_ip: str) -> bool:
        """Whether the address is in one of the networks; never for a malformed address."""
        address = client_address(client_ip)
        if address is None:
            return False
        version, value = address
        return any(value >> shift in values for shift, values in self._for(version))

    def _for(self, version: int) -> tuple[tuple[int, frozenset[int]], ...]:
        return self._v4 if version == 4 else self._v6

    def covers(self, other: CidrSet) -> bool:
        """Every address of ``other`` is in this set (checked network by network: sound, and
        complete unless ``other`` splits one of its networks across several of ours)."""
        return all(any(_within(net, mine) for mine in self.networks) for net in other.networks)


_EVERYWHERE = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))


def trusted_networks(texts: Sequence[str]) -> CidrSet | None:
    """``forwarding.trusted_proxies`` (checked at load) as a set; None when it trusts all."""
    networks = CidrSet(tuple(ipaddress.ip_network(text.strip()) for text in texts))
    return None if networks.covers(CidrSet(_EVERYWHERE)) else networks


def _within(
    inner: ipaddress.IPv4Network | ipaddress.IPv6Network,
    outer: ipaddress.IPv4Network | ipaddress.IPv6Network,
) -> bool:
    if isinstance(inner, ipaddress.IPv4Network) and isinstance(outer, ipaddress.IPv4Network):
        return inner.subnet_of(outer)
    if isinstance(inner, ipaddress.IPv6Network) and isinstance(outer, ipaddress.IPv6Network):
        return inner.subnet_of(outer)
    return False


@dataclass(frozen=True, slots=True)
class HeaderCondition:
    """Some field named ``lname`` is present, equals ``value``, or matches ``pattern``."""

    lname: bytes
    value: bytes | None = None
    pattern: re.Pattern[bytes] | None = None

    def holds(self, headers: Sequence[tuple[bytes, bytes]]) -> bool:
        # A plain loop: any() over a generator costs more than the comparisons, per request.
        for name, value in headers:  # noqa: SIM110
            if name.lower() == self.lname and self._accepts(value):
                return True
        return False

    def _accepts(self, value: bytes) -> bool:
        if self.value is not None:
            return value == self.value
        if self.pattern is not None:
            return self.pattern.search(value) is not None
        return True

    def implies(self, other: HeaderCondition) -> bool:
        """Whenever this holds, ``other`` holds too (so far as can be told for certain)."""
        if self.lname != other.lname:
            return False
        if other.value is None and other.pattern is None:
            return True  # presence: any condition on the name implies the field is there
        if other.value is not None:
            return self.value == other.value
        if self.value is not None:  # the same field's value must match the other's pattern
            assert other.pattern is not None
            return other.pattern.search(self.value) is not None
        return self.pattern == other.pattern


@dataclass(frozen=True, slots=True)
class Match:
    """A rule's conditions; None (or empty) means "any"."""

    paths: frozenset[bytes] | None = None  # exact, normalised
    path_prefixes: tuple[bytes, ...] | None = None
    path_regex: re.Pattern[bytes] | None = None
    methods: frozenset[bytes] | None = None
    hosts: frozenset[bytes] | None = None  # lower-case, no port
    scheme: bytes | None = None
    clients: CidrSet | None = None
    headers: tuple[HeaderCondition, ...] = ()
    statuses: frozenset[int] | None = None  # response-header rules only

    def test(self, view: RequestView) -> re.Match[bytes] | bool:
        """False, True, or the path regex's match (for captures). Cheapest checks first."""
        if self.methods is not None and view.method not in self.methods:
            return False
        if self.scheme is not None and view.scheme != self.scheme:
            return False
        if self.paths is not None and view.path not in self.paths:
            return False
        if self.path_prefixes is not None and not view.path.startswith(self.path_prefixes):
            return False
        if self.hosts is not None and view.host not in self.hosts:
            return False
        if self.clients is not None and not self.clients.contains(view.client_ip):
            return False
        for condition in self.headers:
            if not condition.holds(view.headers):
                return False
        if self.path_regex is not None:
            return self.path_regex.search(view.path) or False
        return True


_ANY = Match()


class Var(enum.Enum):
    """Variables of redirect and rewrite templates (``$host`` or ``${host}``)."""

    HOST = "host"  # the Host, without port
    PATH = "path"  # the normalised path
    QUERY = "query"  # "?" and the query string, or nothing when there is none
    REQUEST_URI = "request_uri"  # path and query exactly as received
    SCHEME = "scheme"  # "https" or "http", from X-Forwarded-Proto


def _query_part(view: RequestView) -> bytes:
    return b"?" + view.query if view.query else b""


_VAR_VALUES: dict[Var, Callable[[RequestView], bytes]] = {
    Var.HOST: lambda view: view.host,
    Var.PATH: lambda view: view.path,
    Var.QUERY: _query_part,
    Var.REQUEST_URI: lambda view: view.target,
    Var.SCHEME: lambda view: view.scheme,
}

# A template part: literal bytes, a capture group (number or name), or a variable.
TemplatePart = bytes | int | str | Var


@dataclass(frozen=True, slots=True)
class Template:
    """A string with ``$1``, ``${name}`` and ``$host``-style references, parsed at load."""

    text: str
    parts: tuple[TemplatePart, ...]

    def expand(self, view: RequestView, captures: re.Match[bytes] | None) -> bytes:
        out = []
        for part in self.parts:
            if isinstance(part, bytes):
                out.append(part)
            elif isinstance(part, Var):
                out.append(_VAR_VALUES[part](view))
            elif captures is not None:
                out.append(captures.group(part) or b"")  # a group that did not take part: ""
        return b"".join(out)

    @property
    def groups(self) -> tuple[int | str, ...]:
        return tuple(p for p in self.parts if isinstance(p, int | str))

    @property
    def uses_host(self) -> bool:
        return Var.HOST in self.parts


class OpKind(enum.Enum):
    REMOVE = "remove"
    SET = "set"  # replaces every field of the name, in the place of the first
    ADD = "add"


@dataclass(frozen=True, slots=True)
class HeaderOp:
    kind: OpKind
    name: bytes  # as configured: the case the peer sees
    value: bytes = b""
    lname: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "lname", self.name.lower())


def apply_header_ops(headers: Sequence[tuple[bytes, bytes]], ops: Sequence[HeaderOp]) -> Headers:
    """A new header list with the operations applied in order (the input is not changed)."""
    out = list(headers)
    lnames = [name.lower() for name, _ in out]  # once, not once per operation
    for op in ops:
        if op.kind is OpKind.ADD:
            out.append((op.name, op.value))
            lnames.append(op.lname)
        elif op.lname in lnames:
            out, lnames = _replace(out, lnames, op)
        elif op.kind is OpKind.SET:
            out.append((op.name, op.value))
            lnames.append(op.lname)
    return out


def _replace(out: Headers, lnames: list[bytes], op: HeaderOp) -> tuple[Headers, list[bytes]]:
    """Drop every field named by ``op``; a set puts its value where the first one was."""
    first = lnames.index(op.lname)
    kept = [i for i, lname in enumerate(lnames) if lname != op.lname]
    new_out, new_lnames = [out[i] for i in kept], [lnames[i] for i in kept]
    if op.kind is OpKind.SET:
        # Nothing before `first` was dropped, so it is still the right place.
        new_out.insert(first, (op.name, op.value))
        new_lnames.insert(first, op.lname)
    return new_out, new_lnames


@dataclass(frozen=True, slots=True)
class ResponseEdit:
    """Response-header operations for responses whose status is in ``statuses`` (None: any)."""

    statuses: frozenset[int] | None
    ops: tuple[HeaderOp, ...]


@dataclass(frozen=True, slots=True)
class Response:
    """An answer made by the proxy, complete: send it as it is (HEAD: the body is b"")."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Redirect:
    status: int  # 301, 302, 303, 307 or 308
    location: Template


@dataclass(frozen=True, slots=True)
class RateLimit:
    rate_per_s: float
    burst: int
    max_clients: int


@dataclass(frozen=True, slots=True)
class Rule:
    """One ``[[rules]]`` table: conditions, then at most one answer and any number of edits."""

    position: int  # 1-based, as in the key path rules[N]
    name: str = ""
    match: Match = _ANY
    request_ops: tuple[HeaderOp, ...] = ()
    response_ops: tuple[HeaderOp, ...] = ()
    rewrite: Template | None = None
    redirect: Redirect | None = None
    respond: Response | None = None
    deny: Response | None = None  # the answer to denied requests (with `allow`: the others)
    allow: CidrSet | None = None
    rate_limit: RateLimit | None = None

    @property
    def label(self) -> str:
        return f"rules[{self.position}]" + (f" ({self.name})" if self.name else "")

    @property
    def always_answers(self) -> bool:
        """Answers every request its conditions match (no gate that could let one on)."""
        if self.allow is not None or self.rate_limit is not None:
            return False
        if self.redirect is not None:
            # A redirect built from $host needs a Host; without one the rule lets it on.
            return not self.redirect.location.uses_host or self.match.hosts is not None
        return self.respond is not None or self.deny is not None

    def response_edit(self) -> ResponseEdit | None:
        if not self.response_ops:
            return None
        return ResponseEdit(self.match.statuses, self.response_ops)


@dataclass(frozen=True, slots=True)
class RuleSet:
    """The configured rules, in order: immutable and comparable (part of `Settings`)."""

    rules: tuple[Rule, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.rules)

    def __len__(self) -> int:
        return len(self.rules)


# --- Decisions ---------------------------------------------------------------------------------


class Decision(NamedTuple):
    """What to do with one request.

    ``response`` set: send it and do not forward. Otherwise forward, to ``target`` when it is
    set (a rewrite; the query string is kept), with ``request_headers()`` applied to the
    headers being forwarded, and pass the upstream's response through `response_headers`.
    (A named tuple, like `RequestView`, because one may be made per request.)
    """

    response: Response | None = None
    target: bytes | None = None
    request_ops: tuple[HeaderOp, ...] = ()
    response_edits: tuple[ResponseEdit, ...] = ()
    rule: str = ""  # the rule that answered, for the diagnostics line

    def request_headers(self, headers: Sequence[tuple[bytes, bytes]]) -> Headers:
        return apply_header_ops(headers, self.request_ops) if self.request_ops else list(headers)

    def response_headers(self, status: int, headers: Sequence[tuple[bytes, bytes]]) -> Headers:
        """The response headers with the edits for ``status`` applied, in rule order."""
        if not self.response_edits:
            return list(headers)
        return apply_header_ops(headers, _ops_for(self.response_edits, status))


# Nothing to do: the shared answer for most requests, so passing costs no allocation.
PASS: Final = Decision()


class Buckets(Protocol):
    """A rate limit's token buckets: in this process (`TokenBuckets`) or shared by the workers
    (`_sharedbuckets.SharedBuckets`)."""

    evictions: int

    def take(self, key: int | str, now_s: float) -> float: ...


# Makes the buckets of the rate limit of the rule at an index (0-based) of the rule set.
BucketsFactory = Callable[[int, "RateLimit"], Buckets]


def local_buckets(index: int, limit: RateLimit) -> Buckets:
    """Buckets in this process's memory (the default)."""
    return TokenBuckets(limit.rate_per_s, limit.burst, max_clients=limit.max_clients)


class RuleEngine:
    """The rules with their run-time state (rate-limit buckets): one per proxy process."""

    __slots__ = ("_rules",)

    def __init__(self, rules: RuleSet, *, buckets: BucketsFactory = local_buckets) -> None:
        self._rules = tuple(
            _Compiled(rule, _buckets(index, rule.rate_limit, buckets))
            for index, rule in enumerate(rules.rules)
        )

    def keeping_buckets(self, make: BucketsFactory = local_buckets) -> BucketsFactory:
        """A factory for a reloaded rule set: a rate limit unchanged at the same place keeps
        its buckets (clients keep what they spent); others get new ones from ``make``."""
        kept = {
            (index, c.rule.rate_limit): c.buckets
            for index, c in enumerate(self._rules)
            if c.buckets is not None
        }

        def reuse(index: int, limit: RateLimit) -> Buckets:
            return kept.get((index, limit)) or make(index, limit)

        return reuse

    def __bool__(self) -> bool:
        return bool(self._rules)

    @property
    def rate_limit_evictions(self) -> int:
        """Clients whose partly spent bucket was forgotten for room (for metrics): non-zero
        means a rate limit's max_clients is too small for the traffic."""
        return sum(c.buckets.evictions for c in self._rules if c.buckets is not None)

    def evaluate(self, view: RequestView, now_s: float) -> Decision:
        """Decide for one request; ``now_s`` is a monotonic clock, for the rate limits."""
        path = view.path
        if not self._rules or path.startswith(HEALTH_CHECK_PREFIX) or path[:1] != b"/":
            # Health checks: checked on the normalised path, so that ".../aee-hc/../../admin"
            # is /admin. Not origin-form (OPTIONS *): no path for rules to talk about.
            return PASS
        target: bytes | None = None
        request_ops: list[HeaderOp] = []
        edits: list[ResponseEdit] = []
        for compiled in self._rules:
            found: re.Match[bytes] | None = None
            if compiled.test is not None:
                captures = compiled.test(view)
                if captures is False:
                    continue
                if captures is not True:
                    found = captures
            rule = compiled.rule
            if compiled.stops:
                answer = _gate(rule, compiled.buckets, view, now_s) or _answer(rule, view, found)
                if answer is not None:
                    if compiled.edit is not None:
                        edits.append(compiled.edit)
                    return Decision(response=_finish(answer, view, edits), rule=rule.label)
            if compiled.edit is not None:
                edits.append(compiled.edit)
            if rule.rewrite is not None and target is None:
                target = rule.rewrite.expand(view, found) + _query_part(view)
            if rule.request_ops:
                request_ops += rule.request_ops
        if target is None and not request_ops and not edits:
            return PASS
        return Decision(None, target, tuple(request_ops), tuple(edits))


class _Compiled:
    """A rule with what evaluation needs precomputed, so that each request does less."""

    __slots__ = ("buckets", "edit", "rule", "stops", "test")

    def __init__(self, rule: Rule, buckets: Buckets | None) -> None:
        self.rule = rule
        request_conditions = replace(rule.match, statuses=None)
        # No condition: skip the call (rules that edit every response are common).
        self.test = None if request_conditions == _ANY else request_conditions.test
        self.buckets = buckets
        self.edit = rule.response_edit()
        self.stops = rule.allow is not None or self.buckets is not None or _answers(rule)


def _answers(rule: Rule) -> bool:
    return rule.redirect is not None or rule.respond is not None or rule.deny is not None


def _buckets(index: int, limit: RateLimit | None, make: BucketsFactory) -> Buckets | None:
    return None if limit is None else make(index, limit)


def _gate(rule: Rule, buckets: Buckets | None, view: RequestView, now_s: float) -> Response | None:
    """The deny or 429 for a request this rule's allow list or rate limit stops, else None."""
    if rule.allow is not None and not rule.allow.contains(view.client_ip):
        return rule.deny or FORBIDDEN
    if buckets is not None:
        wait_s = buckets.take(_bucket_key(view.client_ip), now_s)
        if wait_s:
            return _too_many_requests(retry_after_s(wait_s))
    return None


def _bucket_key(client_ip: str) -> int | str:
    address = client_address(client_ip)
    if address is None:
        return client_ip  # not an address the platform would send; still its own bucket
    version, value = address
    # An IPv6 host usually holds a whole /64: one bucket per /64, or a single client could
    # take 2**64 buckets. Offset by 2**64 so that it cannot collide with an IPv4 address.
    return value if version == 4 else (value >> 64) | (1 << 64)


def _answer(rule: Rule, view: RequestView, captures: re.Match[bytes] | None) -> Response | None:
    if rule.redirect is not None:
        return _redirect(rule.redirect, view, captures)
    if rule.respond is not None:
        return rule.respond
    if rule.deny is not None and rule.allow is None:
        return rule.deny
    return None


def _redirect(
    redirect: Redirect, view: RequestView, captures: re.Match[bytes] | None
) -> Response | None:
    if redirect.location.uses_host and not view.host:
        return None  # no usable Host: "https://$host/" would be a broken Location
    location = redirect.location.expand(view, captures)
    if location.startswith((b"//", b"/\\")):
        # A path-relative target whose first capture starts with "/" would make a
        # scheme-relative URL, sending the client to another site: keep it on this one.
        location = b"/" + location.lstrip(b"/\\")
    return text_response(redirect.status, ((b"Location", location),))


def _ops_for(edits: Sequence[ResponseEdit], status: int) -> list[HeaderOp]:
    ops: list[HeaderOp] = []
    for edit in edits:
        if edit.statuses is None or status in edit.statuses:
            ops += edit.ops
    return ops


def _finish(answer: Response, view: RequestView, edits: list[ResponseEdit]) -> Response:
    ops = _ops_for(edits, answer.status)
    body = b"" if view.method == b"HEAD" else answer.body  # Content-Length stays the GET's
    if not ops and body is answer.body:
        return answer
    headers = tuple(apply_header_ops(answer.headers, ops)) if ops else answer.headers
    return Response(answer.status, headers, body)


def text_response(
    status: int, headers: tuple[tuple[bytes, bytes], ...] = (), body: bytes | None = None
) -> Response:
    """An answer with a plain-text body (by default "403 Forbidden") and its framing."""
    if body is None:
        body = b"%d %s\n" % (status, _REASONS.get(status, b""))
    framing: tuple[tuple[bytes, bytes], ...] = ()
    if status not in (204, 304):  # no body, and no Content-Length either (RFC 9110 8.6)
        framing = ((b"Content-Length", b"%d" % len(body)),)
        if body and not any(name.lower() == b"content-type" for name, _ in headers):
            framing = ((b"Content-Type", b"text/plain; charset=utf-8"), *framing)
    return Response(status, (*headers, *framing), body)


_REASONS = {status.value: status.phrase.encode("ascii") for status in HTTPStatus}


def _too_many_requests(retry_after: int) -> Response:
    return text_response(429, ((b"Retry-After", b"%d" % retry_after),))


FORBIDDEN: Final = text_response(403)
