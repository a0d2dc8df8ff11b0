"""Each rule action through the real proxy, with hypercorn's echo app as the origin."""

from __future__ import annotations

import trio

from trioproxy.config._config import settings_from_bytes
from trioproxy.config._settings import Settings

from ..support import exchange_raw, running_proxy

RULES = rb"""
[[rules]]
name = "force https"
match.scheme = "http"
match.path_prefix = "/secure/"
redirect = { to = "https://$host$request_uri", status = 301 }

[[rules]]
match.path_prefix = "/admin/"
allow = ["192.0.2.0/24"]

[[rules]]
match.path = "/robots.txt"
respond.body = "User-agent: *\nDisallow: /private/\n"
respond.headers = { Content-Type = "text/plain" }

[[rules]]
match.path_regex = '^/blog/(?P<year>\d{4})/([^/]+)$'
rewrite = "/articles/${year}/$2"

[[rules]]
match.path_prefix = "/api/"
rate_limit = { rate = 1, burst = 2 }

[[rules]]
match.clients = ["198.51.100.0/24"]
deny = { status = 451, body = "not here" }

[[rules]]
request_headers.set = { X-Env = "production" }
request_headers.remove = ["X-Debug"]
response_headers.set = { Strict-Transport-Security = "max-age=31536000" }

[[rules]]
match.status = ["4xx"]
response_headers.set = { Cache-Control = "no-store" }
"""


def _settings() -> Settings:
    return settings_from_bytes(RULES, file="trioproxy.toml")


async def test_redirect_to_https_and_no_loop(origin: tuple[str, int]) -> None:
    async with running_proxy(origin, _settings()) as proxy, proxy.client() as c:
        plain = await c.request(b"GET", b"/secure/page?q=1", [(b"X-Forwarded-Proto", b"http")])
        secure = await c.request(b"GET", b"/secure/page?q=1", [(b"X-Forwarded-Proto", b"https")])
    assert plain.status == 301
    assert plain.header(b"location") == b"https://test.example/secure/page?q=1"
    assert secure.status == 200  # the redirected request arrives as https: no second redirect
    assert plain.header(b"x-request-id")


async def test_allow_list_denies_others_with_403(origin: tuple[str, int]) -> None:
    async with running_proxy(origin, _settings()) as proxy, proxy.client() as c:
        outsider = await c.request(b"GET", b"/admin/", [(b"True-Client-IP", b"203.0.113.5")])
        insider = await c.request(b"GET", b"/admin/", [(b"True-Client-IP", b"192.0.2.10")])
    assert outsider.status == 403
    assert insider.status == 200


async def test_deny_by_client_with_configured_status(origin: tuple[str, int]) -> None:
    async with running_proxy(origin, _settings()) as proxy, proxy.client() as c:
        denied = await c.request(b"GET", b"/", [(b"True-Client-IP", b"198.51.100.7")])
    assert (denied.status, denied.body) == (451, b"not here")
    # Response-header rules evaluated so far apply to an answer; the 4xx rule comes later.
    assert denied.header(b"cache-control") is None


async def test_static_response_never_reaches_the_origin(origin: tuple[str, int]) -> None:
    async with running_proxy(origin, _settings()) as proxy, proxy.client() as c:
        robots = await c.request(b"GET", b"/robots.txt")
        after = await c.request(b"GET", b"/")  # the connection stays usable
    assert robots.status == 200
    assert robots.body == b"User-agent: *\nDisallow: /private/\n"
    assert robots.header(b"content-type") == b"text/plain"
    assert after.status == 200
    assert [r.upstream_status for r in proxy.records] == [0, 200]


async def test_rewrite_keeps_the_query(origin: tuple[str, int]) -> None:
    async with running_proxy(origin, _settings()) as proxy, proxy.client() as c:
        seen = (await c.request(b"GET", b"/blog/2026/hello?x=1")).json()
    assert (seen["path"], seen["query"]) == ("/articles/2026/hello", "x=1")


async def test_rate_limit_answers_429_with_retry_after(origin: tuple[str, int]) -> None:
    async with running_proxy(origin, _settings()) as proxy, proxy.client() as c:
        client = [(b"True-Client-IP", b"203.0.113.77")]
        statuses = [(await c.request(b"GET", b"/api/x", client)).status for _ in range(3)]
        limited = await c.request(b"GET", b"/api/x", client)
        other = await c.request(b"GET", b"/api/x", [(b"True-Client-IP", b"203.0.113.78")])
    assert statuses == [200, 200, 429]
    assert limited.status == 429
    assert int(limited.header(b"retry-after") or b"0") >= 1
    assert other.status == 200  # buckets are per client


async def test_header_rules_both_ways(origin: tuple[str, int]) -> None:
    async with running_proxy(origin, _settings()) as proxy, proxy.client() as c:
        reply = await c.request(b"GET", b"/", [(b"X-Debug", b"1")])
    names = dict(reply.json()["headers"])
    assert names.get("x-env") == "production"
    assert "x-debug" not in names
    assert reply.header(b"strict-transport-security") == b"max-age=31536000"
    assert reply.header(b"cache-control") is None  # that rule is for 4xx responses only


async def test_health_check_passes_whatever_the_rules_say(origin: tuple[str, int]) -> None:
    deny_all = b"[[rules]]\ndeny = true\n"
    settings = settings_from_bytes(deny_all, file="trioproxy.toml")
    async with running_proxy(origin, settings) as proxy, proxy.client() as c:
        health = await c.request(b"GET", b"/.well-known/section-io/aee-hc/healthz?ts=1")
        other = await c.request(b"GET", b"/")
    assert health.status == 200
    assert other.status == 403


async def test_answer_to_a_request_with_a_body_closes(origin: tuple[str, int]) -> None:
    async with running_proxy(origin, _settings()) as proxy:
        data = await exchange_raw(
            proxy.address,
            b"POST /robots.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        )
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b"Connection: close" in data


async def test_no_rules_costs_no_evaluation(origin: tuple[str, int]) -> None:
    async with running_proxy(origin) as proxy:
        assert not proxy.server.ctx.rule_engine
        with trio.fail_after(5):
            async with proxy.client() as c:
                assert (await c.request(b"GET", b"/")).status == 200
