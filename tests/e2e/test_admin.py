"""The admin listener: /healthz, /readyz, /metrics, loopback-only binding, and the counters.

Real sockets on 127.0.0.1 port 0; the proxy comes from `running_proxy` with Settings built in
code (``admin__listen="127.0.0.1:0"``: the file loader would insist on a fixed port). Metrics are
checked with exact values after known traffic. The counter and histogram arithmetic is tested
without sockets, on `RequestMetrics` directly.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from trioproxy.app._origin import Receive, Scope, Send, handle_lifespan, origin
from trioproxy.core._accesslog import AccessRecord
from trioproxy.engine._admin import (
    AdminListenError,
    AdminServer,
    check_upstream,
    open_admin_listener,
)
from trioproxy.engine._collector import ProxyCollector
from trioproxy.engine._exposition import exposition
from trioproxy.engine._listen import open_listener
from trioproxy.engine._metrics import DURATION_BUCKETS_S, RequestMetrics
from trioproxy.engine._server import ProxyServer

from ..support import (
    Client,
    Reply,
    access_record,
    exchange_raw,
    make_settings,
    running_proxy,
    split_url,
)

ADMIN_ON = make_settings(admin__listen="127.0.0.1:0")

# (sample name, sorted label pairs) -> value
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def admin_request(
    address: tuple[str, int] | None, target: bytes, method: bytes = b"GET"
) -> Reply:
    assert address is not None, "the admin listener is not running"
    with trio.fail_after(10):
        async with Client.connect(address) as client:
            return await client.request(method, target)


async def scrape(address: tuple[str, int] | None) -> Samples:
    reply = await admin_request(address, b"/metrics")
    assert reply.status == 200
    assert reply.header(b"content-type") == b"text/plain; version=0.0.4; charset=utf-8"
    return parse(reply.body.decode())


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def total(samples: Samples, name: str) -> float:
    return sum(v for (sample, _), v in samples.items() if sample == name)


async def status_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers ``/status/NNN`` with status NNN and a body naming it."""
    if scope["type"] == "lifespan":
        await handle_lifespan(receive, send)
        return
    while (await receive()).get("more_body"):
        pass
    status = int(scope["path"].rsplit("/", 1)[-1])
    body = b"status %d\n" % status
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@asynccontextmanager
async def status_origin() -> AsyncIterator[tuple[str, int]]:
    async with origin(status_app) as url:
        yield split_url(url)


async def dead_address() -> tuple[str, int]:
    """A loopback port nobody listens on."""
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        host, port = sock.getsockname()
    return host, port


# --- /metrics after known traffic -------------------------------------------------------------


async def test_metrics_count_requests_exactly() -> None:
    async with status_origin() as upstream, running_proxy(upstream, ADMIN_ON) as proxy:
        admin = proxy.server.admin_address
        async with proxy.client() as client:
            for _ in range(3):
                reply = await client.request(b"GET", b"/status/200", [(b"Host", b"a.example")])
                assert reply.status == 200
            reply = await client.request(b"GET", b"/status/502", [(b"Host", b"b.example")])
            assert reply.status == 502
            # The client connection is still open while we look.
            samples = await scrape(admin)
    records = proxy.records
    assert [r.status for r in records] == [200, 200, 200, 502]

    assert value(samples, "trioproxy_requests_total", code_class="2xx") == 3
    assert value(samples, "trioproxy_requests_total", code_class="5xx") == 1
    for code_class in ("1xx", "3xx", "4xx"):
        assert value(samples, "trioproxy_requests_total", code_class=code_class) == 0
    assert value(samples, "trioproxy_response_bytes_total") == sum(r.bytes_sent for r in records)

    # Section's sidecar counters: same names and labels as section-io/module-metrics.
    a_bytes = sum(r.bytes_sent for r in records if r.host == b"a.example")
    b_bytes = sum(r.bytes_sent for r in records if r.host == b"b.example")
    assert a_bytes > 0
    assert b_bytes > 0
    count = "section_http_request_count_total"
    sent = "section_http_bytes_total"
    assert value(samples, count, hostname="a.example", status="200") == 3
    assert value(samples, count, hostname="b.example", status="502") == 1
    assert total(samples, count) == 4
    assert value(samples, sent, hostname="a.example", status="200") == a_bytes
    assert value(samples, sent, hostname="b.example", status="502") == b_bytes

    assert value(samples, "trioproxy_request_duration_seconds_count") == 4
    assert value(samples, "trioproxy_request_duration_seconds_bucket", le="+Inf") == 4
    assert value(samples, "trioproxy_request_duration_seconds_sum") == pytest.approx(
        sum(r.duration_s for r in records)
    )
    assert value(samples, "trioproxy_upstream_duration_seconds_count") == 4

    assert value(samples, "trioproxy_downstream_connections_open") == 1
    assert value(samples, "trioproxy_downstream_connections_total") == 1
    assert value(samples, "trioproxy_tunnels_open") == 0
    assert value(samples, "trioproxy_upstream_retries_total") == 0
    assert value(samples, "trioproxy_access_log_dropped_lines_total") == 0
    pool = proxy.server.pool
    assert value(samples, "trioproxy_upstream_pool_size") == pool.limits.size
    assert value(samples, "trioproxy_upstream_pool_in_use") == 0
    assert value(samples, "trioproxy_upstream_pool_waiters") == 0
    assert value(samples, "trioproxy_upstream_pool_idle") == value(
        samples, "trioproxy_upstream_pool_open"
    )
    assert value(samples, "trioproxy_upstream_connections_opened_total") == pool.stats.opened
    assert value(samples, "trioproxy_upstream_connections_reused_total") == 3


async def test_metrics_count_proxy_errors_and_rejected_requests() -> None:
    async with running_proxy(await dead_address(), ADMIN_ON) as proxy:
        async with proxy.client() as client:
            for _ in range(2):
                assert (await client.request(b"GET", b"/", [(b"Host", b"c.example")])).status == 502
        garbage = await exchange_raw(proxy.address, b"NOT HTTP\r\n\r\n")
        assert garbage.startswith(b"HTTP/1.1 400 ")
        samples = await scrape(proxy.server.admin_address)
    assert value(samples, "trioproxy_requests_total", code_class="5xx") == 2
    assert value(samples, "trioproxy_requests_total", code_class="4xx") == 1
    count = "section_http_request_count_total"
    assert value(samples, count, hostname="c.example", status="502") == 2
    # A request that could not be parsed has no Host: "-", as in the access log.
    assert value(samples, count, hostname="-", status="400") == 1
    assert value(samples, "section_http_bytes_total", hostname="-", status="400") == (
        proxy.records[-1].bytes_sent
    )
    assert value(samples, "trioproxy_response_bytes_total") == sum(
        r.bytes_sent for r in proxy.records
    )


async def test_nothing_is_counted_when_the_admin_listener_is_off(
    origin: tuple[str, int],
) -> None:
    async with running_proxy(origin) as proxy, proxy.client() as client:
        assert (await client.request(b"GET", b"/")).status == 200
    assert proxy.server.admin_address is None
    assert proxy.server.ctx.metrics.observed == 0
    assert len(proxy.records) == 1


def test_access_log_drops_are_reported() -> None:
    server = ProxyServer(ADMIN_ON, ("127.0.0.1", 9), lambda record: None)
    samples = parse(exposition(ProxyCollector(server.ctx, lambda: 7)).decode())
    assert value(samples, "trioproxy_access_log_dropped_lines_total") == 7


# --- /healthz and /readyz ---------------------------------------------------------------------


async def test_readyz_is_200_with_a_live_origin(origin: tuple[str, int]) -> None:
    async with running_proxy(origin, ADMIN_ON) as proxy:
        reply = await admin_request(proxy.server.admin_address, b"/readyz")
        opened = proxy.server.pool.stats.opened
    assert (reply.status, reply.body) == (200, b"ready\n")
    assert opened == 0  # a fresh connection, opened and closed: the pool never saw it


async def test_readyz_is_503_with_the_reason_when_the_upstream_is_down() -> None:
    dead = await dead_address()
    async with running_proxy(dead, ADMIN_ON) as proxy:
        reply = await admin_request(proxy.server.admin_address, b"/readyz")
    assert reply.status == 503
    assert reply.header(b"content-type") == b"text/plain; charset=utf-8"
    where = f"127.0.0.1:{dead[1]}"
    expected = f"cannot connect to upstream {where}: Connection refused\n"  # the address once
    assert reply.body == expected.encode()


async def test_readyz_is_503_when_the_upstream_name_does_not_resolve() -> None:
    async with running_proxy(("no-such-host.invalid", 80), ADMIN_ON) as proxy:
        reply = await admin_request(proxy.server.admin_address, b"/readyz")
    assert reply.status == 503
    # "does not resolve" at once, or (with a slow resolver) a timeout that says where it was.
    assert reply.body.startswith(
        (
            b"upstream no-such-host.invalid:80 does not resolve: ",
            b"upstream no-such-host.invalid:80: timed out resolving it after 2s",
        )
    )


async def test_readiness_check_gives_up_after_its_timeout() -> None:
    # 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never routed, so a connect hangs (or fails at
    # once where there is no route at all); either way the answer is a reason, in time.
    with trio.fail_after(5):
        problem = await check_upstream("192.0.2.1", 80, timeout_s=0.2)
    assert problem is not None
    assert problem.startswith(("upstream 192.0.2.1:80: timed out", "cannot connect"))


# --- Routing and HTTP hygiene -----------------------------------------------------------------


async def test_other_paths_are_404_and_other_methods_405(origin: tuple[str, int]) -> None:
    async with running_proxy(origin, ADMIN_ON) as proxy:
        admin = proxy.server.admin_address
        missing = await admin_request(admin, b"/")
        also_missing = await admin_request(admin, b"/healthz/extra")
        post = await admin_request(admin, b"/metrics", method=b"POST")
        head = await admin_request(admin, b"/healthz", method=b"HEAD")
        with_query = await admin_request(admin, b"/healthz?ts=1700000000")
    assert missing.status == 404
    assert also_missing.status == 404
    assert post.status == 405
    assert post.header(b"allow") == b"GET, HEAD"
    assert (head.status, head.body, head.header(b"content-length")) == (200, b"", b"3")
    assert (with_query.status, with_query.body) == (200, b"ok\n")
    for reply in (missing, post, with_query):
        assert reply.header(b"connection") == b"close"


@asynccontextmanager
async def bare_admin(io_timeout_s: float = 5.0) -> AsyncIterator[tuple[str, int]]:
    """An AdminServer on its own, not draining, upstream irrelevant."""
    listener = open_admin_listener("127.0.0.1:0")
    proxy = ProxyServer(ADMIN_ON, ("127.0.0.1", 9), lambda record: None)  # never run
    server = AdminServer(
        is_draining=lambda: False,
        upstream=("127.0.0.1", 9),
        metrics_snapshot=ProxyCollector(proxy.ctx).snapshot,
        io_timeout_s=io_timeout_s,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, listener)
        try:
            yield listener.socket.getsockname()[:2]
        finally:
            nursery.cancel_scope.cancel()
            listener.socket.close()


async def test_an_oversized_request_head_is_431() -> None:
    async with bare_admin() as admin:
        with trio.fail_after(10):
            data = await exchange_raw(
                admin, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 10_000 + b"\r\n\r\n"
            )
    assert data.startswith(b"HTTP/1.1 431 ")


async def test_malformed_request_is_400() -> None:
    async with bare_admin() as admin:
        with trio.fail_after(10):
            data = await exchange_raw(admin, b"\x00\x01 nonsense\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 400 ")


async def test_a_silent_client_is_dropped_after_the_read_deadline() -> None:
    async with bare_admin(io_timeout_s=0.2) as admin:
        with trio.fail_after(5):
            stream = await trio.open_tcp_stream(*admin)
            async with stream:
                assert await stream.receive_some(1024) == b""  # closed, unanswered


# --- Loopback only ----------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["0.0.0.0:0", "[::]:0"])
async def test_the_proxy_refuses_a_public_admin_address(address: str) -> None:
    # Settings built in code skip the config loader's loopback check; the engine checks again.
    settings = make_settings(admin__listen=address)
    listener = open_listener("127.0.0.1", 0)
    server = ProxyServer(settings, ("127.0.0.1", 9), lambda record: None)
    with pytest.raises(AdminListenError, match="not a loopback address"):
        await server.run([listener])
    assert listener.socket.fileno() == -1  # the public listener was not left open


@pytest.mark.parametrize("address", ["127.0.0.1:0", "127.0.0.2:0", "localhost:0"])
def test_loopback_admin_addresses_are_accepted_before_trio_runs(address: str) -> None:
    # Synchronous, as the command binds its addresses before trio.run.
    listener = open_admin_listener(address)
    try:
        host = listener.socket.getsockname()[0]
        assert host.startswith("127.") or host == "::1"
    finally:
        os.close(listener.socket.detach())  # a trio socket's close() needs a running trio


async def test_a_prebound_admin_listener_is_served_and_counted(
    origin: tuple[str, int],
) -> None:
    # What the command does: bind both addresses first, then run. Settings say nothing; the
    # server is told to count when it is built.
    listener = open_listener("127.0.0.1", 0)
    admin = open_admin_listener("127.0.0.1:0")
    records: list[AccessRecord] = []
    server = ProxyServer(make_settings(), origin, records.append, count_requests=True)
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(server.run, [listener], admin_listener=admin))
        assert server.admin_address == admin.socket.getsockname()[:2]
        async with Client.connect(listener.socket.getsockname()[:2]) as client:
            assert (await client.request(b"GET", b"/")).status == 200
        samples = await scrape(server.admin_address)
        nursery.cancel_scope.cancel()
    assert value(samples, "trioproxy_requests_total", code_class="2xx") == 1
    assert len(records) == 1
    assert admin.socket.fileno() == -1  # run() closed it on the way out


async def test_a_prebound_admin_listener_on_a_server_built_not_to_count_is_refused() -> None:
    # Counting is decided when the server is built; run() does not swap the sink later.
    listener = open_listener("127.0.0.1", 0)
    admin = open_admin_listener("127.0.0.1:0")
    server = ProxyServer(make_settings(), ("127.0.0.1", 9), lambda record: None)
    assert not server.ctx.metrics.observed
    with pytest.raises(ValueError, match="count_requests=True"):
        await server.run([listener], admin_listener=admin)
    assert admin.socket.fileno() == -1 and listener.socket.fileno() == -1


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("0.0.0.0:9000", "not a loopback address"),
        ("no-port", "expected HOST:PORT"),
        ("no-such-host.invalid:9000", "cannot listen on no-such-host.invalid:9000"),
    ],
)
def test_bad_admin_addresses_are_refused_clearly(address: str, message: str) -> None:
    with pytest.raises(AdminListenError, match=message):
        open_admin_listener(address)


# --- The counters, without sockets ------------------------------------------------------------


def families_text(metrics: RequestMetrics) -> Samples:
    return parse(exposition(metrics.snapshot()).decode())


def test_histogram_buckets_are_inclusive_upper_bounds() -> None:
    metrics = RequestMetrics()
    for seconds in (0.005, 0.0050001, 0.0, 500.0):
        metrics.observe(access_record(duration_s=seconds, upstream_s=seconds))
    samples = families_text(metrics)
    bucket = "trioproxy_request_duration_seconds_bucket"
    assert value(samples, bucket, le="0.001") == 1  # 0.0
    assert value(samples, bucket, le="0.005") == 2  # "le" includes the bound itself
    assert value(samples, bucket, le="0.01") == 3
    assert value(samples, bucket, le="120.0") == 3
    assert value(samples, bucket, le="+Inf") == 4
    assert value(samples, "trioproxy_request_duration_seconds_sum") == pytest.approx(500.0100001)
    upstream = "trioproxy_upstream_duration_seconds_bucket"
    assert value(samples, upstream, le="+Inf") == 4
    assert len([s for s in samples if s[0] == bucket]) == len(DURATION_BUCKETS_S) + 1


def test_requests_without_an_upstream_exchange_stay_out_of_the_upstream_histogram() -> None:
    metrics = RequestMetrics()
    metrics.observe(access_record(upstream_s=-1.0))
    metrics.observe(access_record(upstream_s=0.0))  # a 0 s exchange is still an exchange
    samples = families_text(metrics)
    assert value(samples, "trioproxy_upstream_duration_seconds_count") == 1
    assert value(samples, "trioproxy_request_duration_seconds_count") == 2


def test_hostnames_beyond_the_cap_are_folded_into_other() -> None:
    metrics = RequestMetrics(max_hostnames=2)
    for host in (b"a", b"b", b"c", b"d", b"a", b"c"):
        metrics.observe(access_record(host=host, sent=10))
    metrics.observe(access_record(host=b"d", status=404, sent=1))
    samples = families_text(metrics)
    count = "section_http_request_count_total"
    assert value(samples, count, hostname="a", status="200") == 2
    assert value(samples, count, hostname="b", status="200") == 1
    assert value(samples, count, hostname="other", status="200") == 3
    assert value(samples, count, hostname="other", status="404") == 1
    assert value(samples, "section_http_bytes_total", hostname="other", status="200") == 30
    assert {dict(labels)["hostname"] for (name, labels) in samples if name == count} == {
        "a",
        "b",
        "other",
    }


def test_no_status_and_odd_bytes_are_labelled_as_the_access_log_writes_them() -> None:
    metrics = RequestMetrics()
    metrics.observe(access_record(host=b"", status=0))
    metrics.observe(access_record(host=b'we"ird\\host\xe9', status=200))
    samples = families_text(metrics)
    assert value(samples, "trioproxy_requests_total", code_class="none") == 1
    assert value(samples, "section_http_request_count_total", hostname="-", status="-") == 1
    # Quotes and backslashes survive the text format's escaping; bytes are latin-1, as logged.
    weird = 'we"ird\\host\xe9'
    assert value(samples, "section_http_request_count_total", hostname=weird, status="200") == 1
