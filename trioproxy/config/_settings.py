"""The proxy's settings: frozen, typed, and valid by construction of their defaults.

Each section of ``trioproxy.toml`` is one dataclass below; each key is one field. The field's
metadata says what values are allowed (``min``/``max``/``choices``), so the loader in
``_config`` can check a file without a second, drifting copy of the schema. Units are in the
names. Every default says where it came from.

The one exception is ``[[rules]]``, an ordered array of tables rather than a section of keys:
its schema and loader are in ``_ruleconfig``, its meaning in ``core._rulemodel`` and
``core._ruleengine``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core._accesslog import ACCESS_LOG_FIELDS
from ..core._rulemodel import RuleSet


def _num(default: float, lo: float, hi: float, why: str) -> Any:
    return field(default=default, metadata={"min": lo, "max": hi, "doc": why})


@dataclass(frozen=True, slots=True)
class Timeouts:
    # How long a client may take to send a whole request head once it has started one
    # (slowloris). HAProxy's `timeout http-request` recommendation; nginx uses 60 s.
    client_header_s: float = _num(10.0, 0.1, 3600, "client request head deadline")
    # Idle time allowed between requests on a downstream keep-alive connection (nginx default).
    client_idle_s: float = _num(75.0, 0.1, 3600, "downstream keep-alive idle")
    # Inactivity allowed while reading a request body (nginx client_body_timeout).
    client_body_s: float = _num(60.0, 0.1, 3600, "request body read inactivity")
    # Inactivity allowed while writing to the client (nginx send_timeout).
    client_send_s: float = _num(60.0, 0.1, 3600, "response write inactivity")
    # Section's own nginx: 60 s connect, 120 s read, "so nginx always fails before ingress".
    upstream_connect_s: float = _num(60.0, 0.1, 600, "upstream connect")
    upstream_response_s: float = _num(120.0, 0.1, 3600, "upstream response head")
    upstream_read_s: float = _num(120.0, 0.1, 3600, "upstream body read inactivity")
    upstream_send_s: float = _num(120.0, 0.1, 3600, "upstream write inactivity")
    # How long a request may wait for a free upstream connection when the pool is full.
    pool_wait_s: float = _num(10.0, 0.0, 600, "wait for a pooled connection")
    # A request body larger than limits.request_buffer_bytes streams upstream while it
    # arrives; all of it must arrive within this (nginx has no such bound; Apache's
    # mod_reqtimeout does). With limits.min_body_rate_bytes_per_s it stops a trickle.
    client_body_total_s: float = _num(3600.0, 1.0, 86400, "whole streamed request body")
    # In-flight exchanges get this long to finish after SIGTERM (Kubernetes grants 30 s).
    drain_s: float = _num(25.0, 0.0, 3600, "graceful shutdown drain")
    # An idle WebSocket tunnel is closed after this (nginx proxy_read_timeout is 60 s;
    # WebSocket peers ping far more often than hourly).
    tunnel_idle_s: float = _num(3600.0, 1.0, 86400, "idle tunnel")
    # Once one side of a tunnel has closed its half, the other gets this long to follow
    # (HAProxy's timeout client-fin / server-fin).
    tunnel_fin_s: float = _num(10.0, 0.1, 3600, "half-closed tunnel")


@dataclass(frozen=True, slots=True)
class Upstream:
    # Idle keep-alive connections kept for reuse (nginx's `keepalive N`). Busy connections are
    # not counted: each client connection holds at most one, so limits.max_connections
    # bounds them, and clients that hold theirs (slow bodies, unread responses) cannot take
    # a connection from anyone else.
    pool_size: int = _num(256, 1, 65536, "idle upstream connections kept")
    # A hard cap on all upstream connections, busy ones included (nginx's `max_conns`);
    # 0: none but limits.max_connections. Beyond it requests wait timeouts.pool_wait_s (503).
    max_connections: int = _num(0, 0, 1 << 20, "upstream connections, busy included (0: no cap)")
    # Idle pooled connections are closed after this: below Node's 5 s keep-alive default
    # (nodejs/node#20256), so we never reuse a connection the origin is about to drop.
    idle_timeout_s: float = _num(4.0, 0.1, 3600, "idle upstream connection expiry")
    # The system resolver's answer for the upstream name is reused for at most this long.
    dns_ttl_s: float = _num(5.0, 0.0, 3600, "upstream name re-resolution interval")
    # A failed resolution is remembered this long: during a resolver outage requests fail
    # fast instead of each waiting out its own lookup (nginx's resolver caches errors too).
    dns_negative_ttl_s: float = _num(1.0, 0.0, 3600, "failed resolution reuse")
    # A pooled connection older than this is closed when it comes back (nginx's
    # `keepalive_time` is 1 h): traffic moves to a changed next-hop even over a stable answer.
    max_connection_age_s: float = _num(300.0, 1.0, 86400, "upstream connection age")
    # A passive circuit breaker on the next hop (HAProxy's `observe layer4`, Envoy's outlier
    # detection): after this many connect failures in a row, requests needing a new upstream
    # connection get a 503 with Retry-After at once for breaker_cooldown_s, instead of each
    # waiting out the connect timeout; then one probe goes through, and its success closes
    # it. Only connects count (never 5xx responses), so a healthy chain never sees it.
    # 5 is Envoy's consecutive_5xx default; 0: off.
    breaker_failures: int = _num(5, 0, 1_000_000, "connect failures in a row (0: off)")
    # How long the open breaker answers 503 before the probe (Envoy's base_ejection_time: 30
    # s; shorter here, as there is one next hop and the platform retries a 503 at once).
    breaker_cooldown_s: float = _num(10.0, 0.1, 3600, "breaker open before a probe")


@dataclass(frozen=True, slots=True)
class Limits:
    # Total bytes of a request head (line + fields). Section's nginx allows 4 x 32 KiB; h11's
    # default is 16 KiB. 431 beyond.
    max_header_bytes: int = _num(65536, 1024, 1 << 24, "request head size")
    # Count of header fields (Apache's LimitRequestFields).
    max_header_count: int = _num(100, 1, 10000, "request header fields")
    # Request line length (nginx large_client_header_buffers: 8 KiB); 414 beyond.
    max_request_line_bytes: int = _num(8192, 64, 1 << 20, "request line length")
    # Open downstream connections. At the limit the oldest idle keep-alive connection is
    # closed to admit a newcomer (nginx does the same); when every one is busy, newcomers wait
    # in the kernel's backlog. Unless the file sets it, each process lowers it to what fits
    # its share of the container's memory limit at worst (`_memfit`: 565 at 256 MiB).
    max_connections: int = _num(10000, 1, 1 << 20, "concurrent downstream connections")
    # Requests served on one client connection before it is closed (nginx's default).
    keepalive_requests: int = _num(1000, 1, 1 << 30, "requests per client connection")
    # A request body up to this size is read whole before an upstream connection is taken,
    # so a client that is slow to send it holds no upstream connection (nginx buffers the
    # whole body, spilling to disk; HAProxy's http-buffer-request holds one buffer). Larger
    # bodies stream.
    request_buffer_bytes: int = _num(65536, 0, 1 << 26, "request body buffered before upstream")
    # A response up to this size is read whole and its upstream connection released, however
    # slowly the client reads it (nginx's proxy_buffers: 8 x 8 KiB, plus the head buffer).
    response_buffer_bytes: int = _num(65536, 0, 1 << 26, "response read ahead from upstream")
    # After the first timeouts.client_body_s (or client_send_s), a streamed request body (or a
    # response) must average at least this many bytes a second, so a peer moving a byte just
    # inside each inactivity timeout cannot hold its connections for ever. 0: no floor.
    min_body_rate_bytes_per_s: int = _num(1024, 0, 1 << 30, "streamed request body rate floor")
    min_send_rate_bytes_per_s: int = _num(1024, 0, 1 << 30, "response send rate floor")
    # Request bodies over this get a 413 (nginx's client_max_body_size); 0: no limit. Off by
    # default, as in Section's own nginx (`client_max_body_size 0`: the edge protects): a
    # proxy in a CDN chain must pass the uploads the site accepts, and nginx's 1 MiB default
    # would break them. A [[rules]] table's max_request_body_bytes overrides it per path.
    max_request_body_bytes: int = _num(0, 0, 1 << 40, "request body size (0: no limit)")


@dataclass(frozen=True, slots=True)
class Forwarding:
    # The pseudonym in `Via: 1.1 <name>` on requests and responses (RFC 9110 7.6.3); "" omits Via.
    via_name: str = field(
        default="trioproxy",
        metadata={
            "pattern": r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]*$",
            "expect": 'an HTTP token (letters, digits and !#$%&\'*+-.^_`|~), or "" for no Via',
        },
    )
    # Append the downstream peer to X-Forwarded-For, as nginx's $proxy_add_x_forwarded_for does.
    append_x_forwarded_for: bool = True
    # Peers whose True-Client-IP and X-Forwarded-For are believed (nginx's set_real_ip_from).
    # Every peer by default: in Section's chain only the platform's own proxies reach us.
    # From any other peer, the TCP peer is the client for rules, rate limits and remote_addr.
    trusted_proxies: tuple[str, ...] = field(
        default=("0.0.0.0/0", "::/0"), metadata={"networks": True}
    )


@dataclass(frozen=True, slots=True)
class AccessLog:
    # Section's log pipeline reads JSON (its nginx's `section_json`) or LTSV.
    format: str = field(default="json", metadata={"choices": ("json", "ltsv")})
    # Which fields each line carries, in this order; default: all of them.
    fields: tuple[str, ...] = field(
        default=ACCESS_LOG_FIELDS, metadata={"subset_of": ACCESS_LOG_FIELDS}
    )


@dataclass(frozen=True, slots=True)
class Diagnostics:
    # stderr lines: "text" for people, "json" (one object per line) for log collectors.
    # --log-format / TRIOPROXY_LOG_FORMAT win over it.
    format: str = field(default="text", metadata={"choices": ("text", "json")})


@dataclass(frozen=True, slots=True)
class Admin:
    # Loopback-only health/metrics listener, "HOST:PORT"; "" keeps it off.
    listen: str = field(default="", metadata={"loopback_address": True})
    # Exchanges GET /journal keeps, newest last (a ring, for test harnesses); 0 keeps none,
    # and then recording costs the proxy nothing.
    journal_size: int = _num(0, 0, 100_000, "exchanges the journal keeps")
    # The first bytes of each request body the journal keeps (as received, before any hook
    # transform); 0 keeps none. Memory: at most this times journal_size.
    journal_body_bytes: int = _num(0, 0, 1 << 20, "request body bytes each journal entry keeps")
    # POST /faults and DELETE /faults/NAME change what the proxy does: for test harnesses
    # only, so off unless asked for (GET /faults lists the faults either way).
    faults: bool = False


@dataclass(frozen=True, slots=True)
class Tuning:
    # Before the event loop sleeps, poll for up to this long (microseconds; adaptive: halved by
    # long idle periods, down to nothing), so a virtual machine's processor need not halt and
    # wake for an answer due within it. HAProxy's `busy-polling`, bounded; 0 never polls.
    busy_poll_us: int = _num(50, 0, 1000, "busy polling before the loop sleeps, in us")


@dataclass(frozen=True, slots=True)
class Settings:
    timeouts: Timeouts = field(default_factory=Timeouts)
    upstream: Upstream = field(default_factory=Upstream)
    limits: Limits = field(default_factory=Limits)
    forwarding: Forwarding = field(default_factory=Forwarding)
    access_log: AccessLog = field(default_factory=AccessLog)
    diagnostics: Diagnostics = field(default_factory=Diagnostics)
    admin: Admin = field(default_factory=Admin)
    tuning: Tuning = field(default_factory=Tuning)
    # Request rules, in file order; none by default (every request is forwarded as it is).
    rules: RuleSet = field(default_factory=RuleSet)
