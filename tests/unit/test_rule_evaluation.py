"""[[rules]] evaluation (`core/_ruleengine`): matches, order and accumulation, the platform's
health checks, redirect loops. Pure: no sockets, no trio. (Split out of the former
test_rules.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from trioproxy.core._requestview import RequestView
from trioproxy.core._ruleengine import PASS, RuleEngine
from trioproxy.core._rulemodel import RuleSet

from .rules_support import FORCE_HTTPS, FORWARD, engine, outcome, view

# --- Evaluation, one rule set and one request per row ---------------------------------------

EVALUATION = [
    # (id, rules, request, expected outcome)
    ("no-rules", "", view("/x"), ("forward", "/x", [])),
    (
        "force-https",
        '[[rules]]\nmatch.scheme = "http"\nredirect = { to = "https://$host$request_uri" }',
        view("/a/b?q=1", proto="http", host="Example.COM:8080"),
        ("answer", 302, "https://example.com/a/b?q=1"),
    ),
    (
        "force-https-leaves-https-alone",
        '[[rules]]\nmatch.scheme = "http"\nredirect = { to = "https://$host$request_uri" }',
        view("/a"),
        ("forward", "/a", []),
    ),
    (
        "no-x-forwarded-proto-is-http",
        '[[rules]]\nmatch.scheme = "http"\nredirect = { to = "https://$host$path", status = 301 }',
        view("/a?b", proto=None),
        ("answer", 301, "https://example.com/a"),
    ),
    (
        "redirect-needs-a-host",
        '[[rules]]\nmatch.scheme = "http"\nredirect = { to = "https://$host/" }',
        view("/", proto="http", host="bad host/"),
        FORWARD,
    ),
    (
        "redirect-captures",
        "[[rules]]\n"
        "match.path_regex = '^/old/(?P<slug>[^/]+)/(\\d+)$'\n"
        'redirect = { to = "/new/${slug}?id=$2&x=$$1", status = 308 }',
        view("/old/hello/42"),
        ("answer", 308, "/new/hello?id=42&x=$1"),
    ),
    (
        "redirect-keeps-the-query-with-$query",
        '[[rules]]\nmatch.path = "/old"\nredirect = { to = "https://new.example/x$query" }',
        view("/old?a=1&b=2"),
        ("answer", 302, "https://new.example/x?a=1&b=2"),
    ),
    (
        "redirect-$query-is-empty-without-a-query",
        '[[rules]]\nmatch.path = "/old"\nredirect = { to = "$scheme://new.example/x$query" }',
        view("/old"),
        ("answer", 302, "https://new.example/x"),
    ),
    (
        "redirect-never-leaves-the-site",
        "[[rules]]\nmatch.path_regex = '^(/.*)$'\nredirect = { to = \"/$1\" }",
        view("/evil.example/x"),
        ("answer", 302, "/evil.example/x"),
    ),
    (
        "rewrite-keeps-the-query",
        "[[rules]]\nmatch.path_regex = '^/blog/(?P<year>\\d{4})/(.+)$'\n"
        'rewrite = "/articles/${year}/$2"',
        view("/blog/2024/hello/world?utm=x"),
        ("forward", "/articles/2024/hello/world?utm=x", []),
    ),
    (
        "rewrite-without-regex",
        '[[rules]]\nmatch.path = "/"\nrewrite = "/index.html"',
        view("/"),
        ("forward", "/index.html", []),
    ),
    (
        "static-response",
        '[[rules]]\nmatch.path = "/robots.txt"\n'
        'respond = { body = "User-agent: *\\nDisallow: /\\n" }',
        view("/robots.txt"),
        ("answer", 200, b"User-agent: *\nDisallow: /\n"),
    ),
    (
        "deny",
        '[[rules]]\nmatch.path_prefix = "/private/"\ndeny = true',
        view("/private/x"),
        ("answer", 403, b"403 Forbidden\n"),
    ),
    (
        "deny-with-status-and-body",
        '[[rules]]\nmatch.methods = ["TRACE", "TRACK"]\ndeny = { status = 405, body = "no\\n" }',
        view("/", method="TRACK"),
        ("answer", 405, b"no\n"),
    ),
    (
        "deny-list",
        '[[rules]]\nmatch.clients = ["198.51.100.0/24", "2001:db8::/32"]\ndeny = true',
        view("/", client="2001:db8::1"),
        ("answer", 403, b"403 Forbidden\n"),
    ),
    (
        "deny-list-other-client",
        '[[rules]]\nmatch.clients = ["198.51.100.0/24"]\ndeny = true',
        view("/", client="198.51.101.1"),
        FORWARD,
    ),
    (
        "allow-list-outside",
        '[[rules]]\nmatch.path_prefix = "/admin/"\nallow = ["10.0.0.0/8"]',
        view("/admin/x"),
        ("answer", 403, b"403 Forbidden\n"),
    ),
    (
        "allow-list-inside",
        '[[rules]]\nmatch.path_prefix = "/admin/"\nallow = ["10.0.0.0/8"]',
        view("/admin/x", client="10.1.2.3"),
        ("forward", "/admin/x", []),
    ),
    (
        "allow-list-ipv4-mapped",
        '[[rules]]\nallow = ["10.0.0.0/8"]',
        view("/", client="::ffff:10.1.2.3"),
        FORWARD,
    ),
    (
        "allow-list-garbage-client-is-outside",
        '[[rules]]\nallow = ["0.0.0.0/0", "::/0"]',
        view("/", client="not-an-address"),
        ("answer", 403, b"403 Forbidden\n"),
    ),
    (
        "allow-list-custom-answer",
        '[[rules]]\nallow = ["10.0.0.0/8"]\ndeny = { status = 404, body = "" }',
        view("/"),
        ("answer", 404, b""),
    ),
    (
        "peer-without-true-client-ip",
        '[[rules]]\nallow = ["10.0.0.0/8"]',
        view("/", client=None, peer="10.9.9.9"),
        FORWARD,
    ),
    (
        "true-client-ip-wins-over-peer",
        '[[rules]]\nallow = ["10.0.0.0/8"]',
        view("/", client="192.0.2.1", peer="10.9.9.9"),
        ("answer", 403, b"403 Forbidden\n"),
    ),
    (
        "request-headers",
        "[[rules]]\n"
        'request_headers = { set = { X-Env = "prod" }, add = { X-Tag = ["a", "b"] },'
        ' remove = ["X-Debug"] }',
        view("/", headers=(("X-Debug", "1"), ("X-Env", "dev"))),
        ("forward", "/", [("X-Env", "prod"), ("X-Tag", "a"), ("X-Tag", "b")]),
    ),
    (
        "all-conditions-must-hold",
        '[[rules]]\nmatch = { methods = "POST", path_prefix = "/api/" }\ndeny = true',
        view("/api/x", method="GET"),
        ("forward", "/api/x", []),
    ),
    (
        "hosts-are-case-insensitive-without-port",
        '[[rules]]\nmatch.hosts = ["WWW.Example.com"]\ndeny = true',
        view("/", host="www.EXAMPLE.com.:443"),
        ("answer", 403, b"403 Forbidden\n"),
    ),
    (
        "hosts-other",
        '[[rules]]\nmatch.hosts = ["www.example.com"]\ndeny = true',
        view("/", host="example.com"),
        FORWARD,
    ),
    (
        "header-present",
        '[[rules]]\nmatch.header_present = "authorization"\ndeny = true',
        view("/", headers=(("Authorization", "x"),)),
        ("answer", 403, b"403 Forbidden\n"),
    ),
    (
        "header-equals-any-field",
        '[[rules]]\nmatch.header_equals = { X-Env = "staging" }\ndeny = true',
        view("/", headers=(("x-env", "prod"), ("X-ENV", "staging"))),
        ("answer", 403, b"403 Forbidden\n"),
    ),
    (
        "header-equals-is-exact",
        '[[rules]]\nmatch.header_equals = { X-Env = "staging" }\ndeny = true',
        view("/", headers=(("X-Env", "Staging"),)),
        ("forward", "/", [("X-Env", "Staging")]),
    ),
    (
        "header-regex",
        "[[rules]]\nmatch.header_regex = { User-Agent = '(?i)badbot' }\ndeny = true",
        view("/", headers=(("User-Agent", "Mozilla BadBot/1.0"),)),
        ("answer", 403, b"403 Forbidden\n"),
    ),
    (
        "header-absent",
        "[[rules]]\nmatch.header_regex = { User-Agent = 'bot' }\ndeny = true",
        view("/"),
        FORWARD,
    ),
    # Normalisation: the path every rule sees is the one the origin will read.
    (
        "escaped-letters",
        '[[rules]]\nmatch.path_prefix = "/admin"\ndeny = true',
        view("/%61dmin/x"),
        ("answer", 403, b"403 Forbidden\n"),
    ),
    (
        "dot-segments",
        '[[rules]]\nmatch.path_prefix = "/admin/"\ndeny = true',
        view("/public/../admin/./x"),
        ("answer", 403, b"403 Forbidden\n"),
    ),
    (
        "escaped-dot-segments",
        '[[rules]]\nmatch.path = "/admin"\ndeny = true',
        view("/x/%2e%2E/admin"),
        ("answer", 403, b"403 Forbidden\n"),
    ),
    (
        "repeated-slashes",
        '[[rules]]\nmatch.path_regex = "^/admin(/|$)"\ndeny = true',
        view("//admin//x"),
        ("answer", 403, b"403 Forbidden\n"),
    ),
    (
        "escaped-slash-stays-a-different-path",
        '[[rules]]\nmatch.path = "/a/b"\ndeny = true',
        view("/a%2fb"),
        ("forward", "/a%2fb", []),
    ),
    (
        "regex-sees-no-query",
        '[[rules]]\nmatch.path_regex = "x=1"\ndeny = true',
        view("/p?x=1"),
        ("forward", "/p?x=1", []),
    ),
    (
        "prefix-is-plain-string-prefix",
        '[[rules]]\nmatch.path_prefix = "/admin"\ndeny = true',
        view("/administrator"),
        ("answer", 403, b"403 Forbidden\n"),
    ),
]


@pytest.mark.parametrize(
    ("rules", "request_", "expected"),
    [row[1:] for row in EVALUATION],
    ids=[row[0] for row in EVALUATION],
)
def test_evaluation(rules: str, request_: RequestView, expected: tuple[Any, ...]) -> None:
    assert outcome(engine(rules).evaluate(request_, 0.0), request_) == expected


def test_nothing_matching_costs_no_allocation() -> None:
    rules = engine('[[rules]]\nmatch.path = "/x"\ndeny = true')
    assert rules.evaluate(view("/y"), 0.0) is PASS
    assert RuleEngine(RuleSet()).evaluate(view("/y"), 0.0) is PASS
    assert not RuleEngine(RuleSet())
    assert rules


# --- Order and accumulation ----------------------------------------------------------------

ORDERED = """
[[rules]]
request_headers.set = { X-A = "1" }
response_headers.set = { X-Frame-Options = "DENY" }

[[rules]]
match.path_prefix = "/old/"
rewrite = "/first"

[[rules]]
match.path_prefix = "/old/"
rewrite = "/second"
request_headers.set = { X-A = "2" }
request_headers.add = { X-B = "b" }

[[rules]]
match.path = "/old/gone"
respond = { status = 410, body = "gone" }
response_headers.set = { Cache-Control = "max-age=60" }

[[rules]]
match.path_prefix = "/old/g"
request_headers.set = { X-Never = "1" }

[[rules]]
match.status = ["5xx", 404]
response_headers.set = { Cache-Control = "no-store" }
response_headers.remove = ["X-Frame-Options"]
"""


def test_edits_accumulate_in_order_and_the_first_rewrite_wins() -> None:
    request = view("/old/page?x=1", headers=(("X-A", "0"),))
    decision = engine(ORDERED).evaluate(request, 0.0)
    assert decision.response is None
    assert decision.target == b"/first?x=1"
    forwarded = decision.request_headers(request.headers)
    # X-A set twice, in the place the client put it; X-B added at the end.
    assert forwarded[-3:] == [(b"True-Client-IP", b"203.0.113.9"), (b"X-A", b"2"), (b"X-B", b"b")]
    assert (b"X-A", b"0") not in forwarded


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, [(b"Server", b"o"), (b"X-Frame-Options", b"DENY")]),
        (404, [(b"Server", b"o"), (b"Cache-Control", b"no-store")]),
        (503, [(b"Server", b"o"), (b"Cache-Control", b"no-store")]),
    ],
)
def test_response_edits_depend_on_the_status(status: int, expected: list[Any]) -> None:
    decision = engine(ORDERED).evaluate(view("/page"), 0.0)
    assert decision.response_headers(status, [(b"Server", b"o")]) == expected


def test_the_first_answer_ends_evaluation_and_carries_earlier_response_edits() -> None:
    decision = engine(ORDERED).evaluate(view("/old/gone"), 0.0)
    assert decision.response is not None
    assert decision.response.status == 410
    assert decision.rule == "rules[4]"
    assert decision.response.headers == (
        (b"Content-Type", b"text/plain; charset=utf-8"),
        (b"Content-Length", b"4"),
        (b"X-Frame-Options", b"DENY"),
        (b"Cache-Control", b"max-age=60"),
    )
    assert decision.request_ops == ()  # the request is not forwarded: nothing to edit


def test_head_gets_the_length_without_the_body() -> None:
    rules = engine('[[rules]]\nmatch.path = "/robots.txt"\nrespond = { body = "abc" }')
    response = rules.evaluate(view("/robots.txt", method="HEAD"), 0.0).response
    assert response is not None
    assert (response.body, dict(response.headers)[b"Content-Length"]) == (b"", b"3")


def test_static_response_headers_and_statuses_without_body() -> None:
    rules = engine(
        '[[rules]]\nmatch.path = "/down"\n'
        'respond = { status = 503, headers = { Retry-After = "120", Content-Type = "text/html" },'
        ' body = "<h1>Back soon</h1>" }\n'
        '[[rules]]\nmatch.path = "/empty"\nrespond = { status = 204 }\n'
    )
    down = rules.evaluate(view("/down"), 0.0).response
    empty = rules.evaluate(view("/empty"), 0.0).response
    assert down is not None
    assert empty is not None
    assert down.headers == (
        (b"Retry-After", b"120"),
        (b"Content-Type", b"text/html"),
        (b"Content-Length", b"18"),
    )
    assert (empty.status, empty.headers, empty.body) == (204, (), b"")  # no Content-Length


def test_rewrites_do_not_feed_later_rules() -> None:
    rules = engine(
        '[[rules]]\nmatch.path = "/a"\nrewrite = "/b"\n[[rules]]\nmatch.path = "/b"\ndeny = true\n'
    )
    assert rules.evaluate(view("/a"), 0.0).target == b"/b"


# --- The platform's health checks -------------------------------------------------------------

EVERYTHING = """
[[rules]]
request_headers.set = { X-A = "1" }
response_headers.set = { X-B = "1" }
rewrite = "/elsewhere"
[[rules]]
allow = ["10.0.0.0/8"]
[[rules]]
rate_limit = { rate = 0.001, burst = 1 }
[[rules]]
respond = { status = 503, body = "maintenance" }
"""


@pytest.mark.parametrize(
    "target",
    [
        "/.well-known/section-io/aee-hc/",
        "/.well-known/section-io/aee-hc/check?x=1",
        "/.well-known/section-io/aee-hc/%63heck",
        "*",
    ],
)
def test_health_checks_and_asterisk_pass_untouched(target: str) -> None:
    rules = engine(EVERYTHING)
    for now in range(3):  # the rate limit would refuse the second
        assert rules.evaluate(view(target, method="OPTIONS", proto="http"), now) is PASS


@pytest.mark.parametrize(
    "target",
    [
        "/.well-known/section-io/aee-hc/../../../admin",
        "/.well-known/section-io/aee-hc",  # not under it
        "/.well-known/section-io/AEE-HC/",
    ],
)
def test_only_real_health_check_paths_pass(target: str) -> None:
    response = engine(EVERYTHING).evaluate(view(target), 0.0).response
    assert response is not None
    assert response.status == 403


def test_maintenance_page_still_passes_health_checks() -> None:
    rules = engine('[[rules]]\nrespond = { status = 503, body = "maintenance" }')
    assert rules.evaluate(view("/.well-known/section-io/aee-hc/x"), 0.0) is PASS
    response = rules.evaluate(view("/"), 0.0).response
    assert response is not None
    assert response.status == 503


# --- Redirect loops -------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["/", "/a/b?c=d", "//x/../y", "/%2e%2e/z?q"])
def test_force_https_cannot_loop(target: str) -> None:
    rules = engine(FORCE_HTTPS)
    first = rules.evaluate(view(target, proto="http", host="Shop.Example:80"), 0.0).response
    assert first is not None
    assert first.status == 308
    location = dict(first.headers)[b"Location"].decode()
    assert location == "https://shop.example" + target
    # The platform's edge terminates TLS and says so in X-Forwarded-Proto; the redirected
    # request is that same URL over https.
    scheme, _, rest = location.partition("://")
    host, _, path = rest.partition("/")
    again = view("/" + path, proto=scheme, host=host)
    assert rules.evaluate(again, 0.0) is PASS
