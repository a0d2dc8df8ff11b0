"""The rules' data model: conditions, templates, header operations and rules, as loaded.

Pure: no I/O and no trio. `config._ruleconfig` builds these from ``[[rules]]``; the engine
(`_ruleengine`) evaluates them. All are immutable and comparable (part of `Settings`).
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ._faults import Fault
from ._requestview import RequestView, client_address

__all__ = [
    "Action",
    "CidrSet",
    "HeaderCondition",
    "HeaderOp",
    "Headers",
    "HookAction",
    "Match",
    "OpKind",
    "RateLimit",
    "Redirect",
    "Response",
    "ResponseEdit",
    "Rule",
    "RuleSet",
    "Template",
    "TemplatePart",
    "Var",
    "apply_field_ops",
    "apply_header_ops",
    "trusted_networks",
]

Headers = list[tuple[bytes, bytes]]


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


def apply_field_ops(
    fields: Sequence[tuple[bytes, bytes, bytes]], ops: Sequence[HeaderOp]
) -> list[tuple[bytes, bytes, bytes]]:
    """`apply_header_ops` on fields with their lower-case names (name, lower-case name,
    value), as a request plan holds them: none is lower-cased again."""
    out = list(fields)
    for op in ops:
        lname = op.lname
        if op.kind is not OpKind.ADD:
            for first, item in enumerate(out):
                if item[1] == lname:
                    # Every field of the name goes; a set puts its value where the first was.
                    out = [item for item in out if item[1] != lname]
                    if op.kind is OpKind.SET:
                        out.insert(first, (op.name, lname, op.value))
                    break
            else:
                if op.kind is OpKind.SET:
                    out.append((op.name, lname, op.value))
            continue
        out.append((op.name, lname, op.value))
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
class Action:
    """A rule action carried out in code at the exchange's seams (the request after the rules,
    the response head, the body, the access line), rather than decided here: a hook, and
    any later kind (faults). Each kind is a frozen subclass; the rules engine collects the
    actions of every matching rule, in rule order (`Decision.actions`), and the engine
    dispatches on the kind. An action may answer, so it never makes a rule always answer."""

    @property
    def kind(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class HookAction(Action):
    """``hook = { file = "hooks/auth.py", name = "check", timeout_s = 0.2, on_error = "pass" }``.

    ``source`` is the file's bytes as read with the TOML (compared, so that a changed hook
    file is a changed configuration); ``on_error`` is 0 for "pass", else 502 or 503. An
    embedded proxy's hooks have ``file`` "" and are looked up by ``name``."""

    file: str
    name: str
    timeout_s: float = 1.0
    on_error: int = 0
    source: bytes = field(default=b"", repr=False)

    @property
    def kind(self) -> str:
        return "hook"

    @property
    def label(self) -> str:
        return f"{self.file}:{self.name}" if self.file else self.name


@dataclass(frozen=True, slots=True)
class FaultAction(Action):
    """``fault = { kind = "reset", at = "after_head", first = 2 }``: the fault to carry out on
    the requests it selects (`core._faults`). Its run-time state (counts, its seeded
    generator) is the rule engine's, as a rate limit's buckets are."""

    fault: Fault

    @property
    def kind(self) -> str:
        return "fault"

    @property
    def label(self) -> str:
        return self.fault.label


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
    max_request_body_bytes: int | None = None  # overrides limits.max_request_body_bytes
    actions: tuple[Action, ...] = ()  # carried out by the engine (hooks), in this order

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

    @property
    def has_hooks(self) -> bool:
        """Whether a rule runs a hook (faults are actions too, but load no code)."""
        return any(isinstance(a, HookAction) for rule in self.rules for a in rule.actions)
