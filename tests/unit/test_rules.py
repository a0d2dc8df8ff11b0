"""[[rules]]: loading and validation, evaluation, token buckets. All pure: no sockets, no trio."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trioproxy.config._config import CONFIG_FILENAME, ConfigError, Problem, settings_from_bytes
from trioproxy.config._settings import Settings
from trioproxy.config._validate import main as validate_main
from trioproxy.core._ratelimit import TokenBuckets, retry_after_s
from trioproxy.core._requestview import RequestView, client_address, normalize_path, request_view
from trioproxy.core._ruleengine import PASS, Decision, RuleEngine
from trioproxy.core._rulemodel import CidrSet, HeaderOp, OpKind, RuleSet, apply_header_ops

FILE = "t.toml"


def rules_of(text: str) -> RuleSet:
    return settings_from_bytes(text.encode(), file=FILE).rules


def engine(text: str) -> RuleEngine:
    return RuleEngine(rules_of(text))


def problems_of(text: str) -> list[Problem]:
    with pytest.raises(ConfigError) as caught:
        settings_from_bytes(text.encode(), file=FILE)
    return caught.value.problems


def view(
    target: str = "/",
    *,
    method: str = "GET",
    host: str | None = "example.com",
    proto: str | None = "https",
    client: str | None = "203.0.113.9",
    peer: str = "10.9.9.9",
    headers: tuple[tuple[str, str], ...] = (),
) -> RequestView:
    """A request as the platform delivers it: Host, X-Forwarded-Proto, True-Client-IP."""
    fields = [("Host", host), ("X-Forwarded-Proto", proto), ("True-Client-IP", client)]
    raw = [(n.encode(), v.encode()) for n, v in [*fields, *headers] if v is not None]
    return request_view(method.encode(), target.encode(), raw, peer)


def outcome(decision: Decision, request: RequestView) -> tuple[Any, ...]:
    """A decision, summed up for tables: the answer, or how the request is forwarded."""
    response = decision.response
    if response is not None:
        location = dict(response.headers).get(b"Location")
        return ("answer", response.status, location.decode() if location else response.body)
    target = decision.target or request.target
    forwarded = decision.request_headers(request.headers)
    own = [(n.decode(), v.decode()) for n, v in forwarded if n.lower() not in PLATFORM_HEADERS]
    return ("forward", target.decode(), own)


PLATFORM_HEADERS = {b"host", b"x-forwarded-proto", b"true-client-ip"}


FORWARD: tuple[Any, ...] = ("forward", "/", [])


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

FORCE_HTTPS = """
[[rules]]
name = "force https"
match.scheme = "http"
redirect = { to = "https://$host$request_uri", status = 308 }
"""


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


# --- Rate limits -------------------------------------------------------------------------------


def test_buckets_burst_then_refill() -> None:
    buckets = TokenBuckets(2.0, 3)  # 2 per second, bursts of 3
    assert [buckets.take("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a", 0.0) == pytest.approx(0.5)
    assert buckets.take("a", 0.25) == pytest.approx(0.25)  # a refusal takes nothing
    assert buckets.take("a", 0.5) == 0.0
    assert buckets.take("a", 0.5) == pytest.approx(0.5)
    assert buckets.take("b", 0.5) == 0.0  # another client has its own bucket
    # Long idle: full again, but never more than burst.
    assert [buckets.take("a", 100.0) for _ in range(4)][-1] > 0


def test_buckets_sustained_rate() -> None:
    buckets = TokenBuckets(10.0, 1)
    granted = sum(buckets.take("a", step / 100) == 0.0 for step in range(1000))  # 10 s
    assert granted == 100


def test_full_buckets_are_forgotten_first() -> None:
    buckets = TokenBuckets(1.0, 2, max_clients=3)
    for key in "abc":
        buckets.take(key, 0.0)  # each half spent, full again at t=1
    buckets.take("d", 0.5)  # table full, none full yet: the stalest ("a") is evicted
    assert (len(buckets), buckets.evictions) == (3, 1)
    buckets.take("e", 5.0)  # b, c and d are full by now: forgotten for free
    assert (len(buckets), buckets.evictions) == (1, 1)


def test_bucket_memory_is_bounded() -> None:
    buckets = TokenBuckets(1.0, 1, max_clients=100)
    for client in range(10_000):
        buckets.take(client, 0.0)
    assert len(buckets) == 100
    assert buckets.take(9_999, 0.0) > 0  # the most recent are the ones remembered


def test_engine_counts_evictions() -> None:
    rules = engine("[[rules]]\nrate_limit = { rate = 1, burst = 1, max_clients = 2 }\n")
    for client in ["192.0.2.1", "192.0.2.2", "192.0.2.3"]:
        assert rules.evaluate(view("/", client=client), 0.0) is PASS
    assert rules.rate_limit_evictions == 1


def test_bucket_arguments() -> None:
    with pytest.raises(ValueError, match="rate_per_s"):
        TokenBuckets(0.0, 1)
    with pytest.raises(ValueError, match="burst"):
        TokenBuckets(1.0, 0)


@pytest.mark.parametrize(
    ("wait_s", "header"), [(0.001, 1), (0.999, 1), (1.0, 1), (1.0000001, 2), (2.5, 3), (60, 60)]
)
def test_retry_after_rounds_up(wait_s: float, header: int) -> None:
    assert retry_after_s(wait_s) == header


RATE_LIMITED = """
[[rules]]
match.path_prefix = "/api/"
rate_limit = { rate = 0.5, burst = 2 }
request_headers.set = { X-Limited = "yes" }
"""


def test_rate_limit_answers_429_with_retry_after() -> None:
    rules = engine(RATE_LIMITED)
    statuses = []
    for _ in range(3):
        decision = rules.evaluate(view("/api/x"), 10.0)
        statuses.append(decision.response.status if decision.response else 200)
    assert statuses == [200, 200, 429]
    refused = rules.evaluate(view("/api/x"), 10.5).response
    assert refused is not None
    assert dict(refused.headers)[b"Retry-After"] == b"2"  # 1.5 s to the next token
    assert rules.evaluate(view("/api/x"), 12.0).request_ops  # a token is back
    assert rules.evaluate(view("/other"), 12.0) is PASS  # not matched: not counted


def test_rate_limit_is_per_client_and_per_ipv6_64() -> None:
    rules = engine(RATE_LIMITED.replace("burst = 2", "burst = 1"))

    def status(client: str, peer: str = "10.0.0.1") -> int:
        response = rules.evaluate(view("/api/", client=client or None, peer=peer), 0.0).response
        return response.status if response else 200

    assert [status("192.0.2.1"), status("192.0.2.1"), status("192.0.2.2")] == [200, 429, 200]
    assert [status("2001:db8:0:1::1"), status("2001:db8:0:1::ffff")] == [200, 429]
    assert status("2001:db8:0:2::1") == 200
    assert [status("", peer="10.0.0.7"), status("", peer="10.0.0.7")] == [200, 429]


def test_each_engine_has_its_own_buckets() -> None:
    rules = rules_of(RATE_LIMITED.replace("burst = 2", "burst = 1"))
    first, second = RuleEngine(rules), RuleEngine(rules)
    assert first.evaluate(view("/api/"), 0.0).response is None
    assert first.evaluate(view("/api/"), 0.0).response is not None
    assert second.evaluate(view("/api/"), 0.0).response is None


def test_allow_list_is_checked_before_tokens_are_spent() -> None:
    rules = engine('[[rules]]\nallow = ["10.0.0.0/8"]\nrate_limit = { rate = 1, burst = 1 }\n')
    for _ in range(3):
        response = rules.evaluate(view("/", client="192.0.2.1"), 0.0).response
        assert response is not None
        assert response.status == 403
    assert rules.evaluate(view("/", client="10.0.0.1"), 0.0).response is None


# --- Pieces ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "normal"),
    [
        (b"/", b"/"),
        (b"/a/b", b"/a/b"),
        (b"/a/b/", b"/a/b/"),
        (b"//a///b", b"/a/b"),
        (b"/a/./b/../c", b"/a/c"),
        (b"/a/b/..", b"/a/"),
        (b"/a/b/.", b"/a/b/"),
        (b"/../../a", b"/a"),
        (b"/..", b"/"),
        (b"/%7euser/%41%2f%2a", b"/~user/A%2F%2A"),
        (b"/%2e%2e/%2E/a", b"/a"),
        (b"/a%", b"/a%"),
        (b"/.well-known/x", b"/.well-known/x"),
        (b"/a/..b/c.", b"/a/..b/c."),
        (b"*", b"*"),
    ],
)
def test_normalize_path(path: bytes, normal: bytes) -> None:
    assert normalize_path(path) == normal


@given(st.text(alphabet="/.%2eEa~", max_size=20))
def test_normalize_path_is_idempotent_and_leaves_no_dot_segments(text: str) -> None:
    normal = normalize_path(("/" + text).encode())
    assert normalize_path(normal) == normal
    assert normal.startswith(b"/")
    assert b"//" not in normal
    assert all(segment not in (b".", b"..") for segment in normal.split(b"/"))


def test_apply_header_ops() -> None:
    headers = [(b"A", b"1"), (b"b", b"2"), (b"a", b"3"), (b"C", b"4")]
    ops = [
        HeaderOp(OpKind.SET, b"A", b"x"),  # replaces both, where the first was
        HeaderOp(OpKind.REMOVE, b"C"),
        HeaderOp(OpKind.ADD, b"b", b"5"),
        HeaderOp(OpKind.SET, b"New", b"n"),  # absent: appended
        HeaderOp(OpKind.REMOVE, b"absent"),
    ]
    assert apply_header_ops(headers, ops) == [
        (b"A", b"x"),
        (b"b", b"2"),
        (b"b", b"5"),
        (b"New", b"n"),
    ]
    assert headers[0] == (b"A", b"1")  # the input is left alone


def test_cidr_set() -> None:
    nets = CidrSet((ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32")))
    assert [nets.contains(a) for a in ["10.255.0.1", "11.0.0.1", "2001:db8:1::", "::1", "x"]] == [
        True,
        False,
        True,
        False,
        False,
    ]
    smaller = CidrSet((ipaddress.ip_network("10.1.0.0/16"),))
    assert nets.covers(smaller)
    assert not smaller.covers(nets)


def test_client_address() -> None:
    assert client_address("::ffff:192.0.2.1") == (4, 0xC0000201)
    assert client_address("192.0.2.1") == (4, 0xC0000201)
    assert client_address("[::1]") is None
    assert client_address("") is None


def test_request_view() -> None:
    request = request_view(
        b"GET",
        b"/a//b/../c?x=1",
        [
            (b"HOST", b" WWW.Example.com.:8080 "),
            (b"x-forwarded-proto", b"HTTPS"),
            (b"True-Client-IP", b" 192.0.2.7 "),
            (b"True-Client-IP", b"192.0.2.8"),
        ],
        "10.0.0.1",
    )
    assert (request.path, request.query, request.host) == (b"/a/c", b"x=1", b"www.example.com")
    assert (request.client_ip, request.scheme) == ("192.0.2.7", b"https")
    assert request.target == b"/a//b/../c?x=1"
    odd = request_view(b"GET", b"/", [(b"Host", b"a b")], "10.0.0.1")
    assert (odd.host, odd.client_ip, odd.scheme) == (b"", "10.0.0.1", b"http")


# --- Loading: good files -----------------------------------------------------------------------

README_EXAMPLE = """
# Redirect plain HTTP to HTTPS. The platform's edge terminates TLS and says which it was in
# X-Forwarded-Proto, so the redirected request arrives as https and is not redirected again.
[[rules]]
name = "force https"
match.scheme = "http"
redirect = { to = "https://$host$request_uri", status = 301 }

# Only the office may see the admin pages; everyone else gets 403.
[[rules]]
match.path_prefix = "/admin/"
allow = ["192.0.2.0/24", "2001:db8:42::/48"]

# robots.txt answered by the proxy.
[[rules]]
match.path = "/robots.txt"
respond = { body = "User-agent: *\\nDisallow: /private/\\n" }

# Old blog URLs: /blog/2024/some-title -> /articles/2024/some-title, query kept.
[[rules]]
match.path_regex = '^/blog/(?P<year>\\d{4})/([^/]+)$'
rewrite = "/articles/${year}/$2"

# At most 5 API requests per second per client, bursts of 20.
[[rules]]
match = { path_prefix = "/api/", methods = ["POST", "PUT", "DELETE"] }
rate_limit = { rate = 5, burst = 20 }

# Tell the origin which environment this is; never pass a debug header on.
[[rules]]
request_headers.set = { X-Env = "production" }
request_headers.remove = ["X-Debug"]

# Security headers on every response; errors are not cached.
[[rules]]
response_headers.set = { Strict-Transport-Security = "max-age=31536000", X-Frame-Options = "DENY" }

[[rules]]
match.status = ["5xx", 404]
response_headers.set = { Cache-Control = "no-store" }
"""


def test_the_documented_example_loads() -> None:
    rules = rules_of(README_EXAMPLE)
    assert len(rules) == 8
    assert rules.rules[0].label == "rules[1] (force https)"


def test_rules_are_part_of_settings_and_comparable() -> None:
    assert Settings().rules == RuleSet()
    assert not Settings().rules
    assert rules_of(README_EXAMPLE) == rules_of(README_EXAMPLE)
    assert rules_of(README_EXAMPLE) != rules_of(FORCE_HTTPS)
    assert settings_from_bytes(b"rules = []\n", file=FILE) == Settings()
    hash(rules_of(README_EXAMPLE))


def test_sub_tables_and_inline_arrays() -> None:
    text = (
        '[[rules]]\n[rules.match]\npath = "/a"\n[rules.respond]\nstatus = 200\n'
        '[[rules]]\n[rules.request_headers.set]\nX-A = "1"\n'
    )
    inline = (
        'rules = [{ match = { path = "/a" }, respond = {} },'
        ' { request_headers = { set = { X-A = "1" } } }]\n'
    )
    assert rules_of(text) == rules_of(inline)
    assert len(rules_of(text)) == 2


def test_inline_rules_report_the_line_of_the_array() -> None:
    (problem,) = problems_of(
        '\nrules = [{ deny = true }, { match = { path = "x" }, deny = true }]\n'
    )
    assert (problem.line, problem.key_path) == (2, "rules[2].match.path")


def test_redirect_default_status_and_respond_defaults() -> None:
    text = '[[rules]]\nmatch.path = "/a"\nredirect = { to = "/x" }\n[[rules]]\nrespond = {}\n'
    rules = rules_of(text).rules
    assert rules[0].redirect is not None
    assert rules[0].redirect.status == 302
    assert rules[1].respond is not None
    assert (rules[1].respond.status, rules[1].respond.body) == (200, b"")


# --- Loading: bad files, one problem each --------------------------------------------------------

BAD_RULES = [
    # (toml, line, key path, fragments the message must contain)
    ("[rules]\n", 1, "rules", ["expected an array of tables ([[rules]] sections)", "a table"]),
    ("rules = 5\n", 1, "rules", ["expected an array of tables", "integer 5"]),
    ("[[rule]]\ndeny = true\n", 1, "rule", ["unknown section", "did you mean 'rules'?"]),
    ("[[rules]]\n", 1, "rules[1]", ["has no action", "request_headers, response_headers"]),
    (
        "[[rules]]\ndeny = true\nmach.path = '/a'\n",
        3,
        "rules[1].mach",
        ["unknown key; did you mean 'rules[1].match'?"],
    ),
    (
        "[[rules]]\npath_prefix = '/a'\ndeny = true\n",
        2,
        "rules[1].path_prefix",
        ["did you mean 'rules[1].match.path_prefix'?"],
    ),
    (
        "[[rules]]\npath = '/a'\ndeny = true\n",
        2,
        "rules[1].path",
        ["did you mean 'rules[1].match.path'?"],
    ),
    (
        "[[rules]]\ndeny = true\nmatch.path_prefx = '/a'\n",
        3,
        "rules[1].match.path_prefx",
        ["did you mean 'rules[1].match.path_prefix'?"],
    ),
    (
        "[[rules]]\ndeny = true\nmatch.zzz = '/a'\n",
        3,
        "rules[1].match.zzz",
        ["unknown key; match allows: path, path_prefix, path_regex, methods"],
    ),
    (
        "[[rules]]\ndeny = true\n\n[[rules]]\nmatch.path_regex = '^/blog/(\\d+'\ndeny = true\n",
        5,
        "rules[2].match.path_regex",
        [
            "expected a Python regular expression",
            "missing ), unterminated subpattern at position 7",
            'found "^/blog/(\\\\d+"',
        ],
    ),
    (
        "[[rules]]\nmatch.path_regex = 5\ndeny = true\n",
        2,
        "rules[1].match.path_regex",
        ["expected a regular expression", "integer 5"],
    ),
    (
        "[[rules]]\nmatch.path = 'admin'\ndeny = true\n",
        2,
        "rules[1].match.path",
        ['expected a path starting with "/"', 'found "admin"'],
    ),
    (
        "[[rules]]\nmatch.path = '/a//b/./c'\ndeny = true\n",
        2,
        "rules[1].match.path",
        ["never matches as written", 'write "/a/b/c"'],
    ),
    (
        "[[rules]]\nmatch.path_prefix = '/%7euser/%2f'\ndeny = true\n",
        2,
        "rules[1].match.path_prefix",
        ["never matches as written", 'write "/~user/%2F"'],
    ),
    (
        "[[rules]]\nmatch.path = '/a b'\ndeny = true\n",
        2,
        "rules[1].match.path",
        ['" " is never in a path: percent-encode it'],
    ),
    (
        "[[rules]]\nmatch.path = '/a?b=1'\ndeny = true\n",
        2,
        "rules[1].match.path",
        ['"?" is not part of a path'],
    ),
    (
        "[[rules]]\nmatch.path = []\ndeny = true\n",
        2,
        "rules[1].match.path",
        ["expected a path or a non-empty array of them", "found array []"],
    ),
    (
        "[[rules]]\nmatch.methods = ['get']\ndeny = true\n",
        2,
        "rules[1].match.methods",
        ["case-sensitive", 'did you mean "GET"?'],
    ),
    (
        "[[rules]]\nmatch.methods = ['GET POST']\ndeny = true\n",
        2,
        "rules[1].match.methods",
        ['expected a method such as "GET"', 'found "GET POST"'],
    ),
    (
        "[[rules]]\nmatch.hosts = ['example.com:8080']\ndeny = true\n",
        2,
        "rules[1].match.hosts",
        ['without the port: "example.com"'],
    ),
    (
        "[[rules]]\nmatch.hosts = ['*.example.com']\ndeny = true\n",
        2,
        "rules[1].match.hosts",
        ["expected a host name or IP address", 'found "*.example.com"'],
    ),
    (
        "[[rules]]\nmatch.scheme = 'HTTPS'\ndeny = true\n",
        2,
        "rules[1].match.scheme",
        ['expected "http" or "https"', 'found string "HTTPS"'],
    ),
    (
        "[[rules]]\nmatch.clients = ['10.0.0.1/8']\ndeny = true\n",
        2,
        "rules[1].match.clients",
        ["expected an IP network", 'found "10.0.0.1/8"', 'did you mean "10.0.0.0/8"?'],
    ),
    (
        "[[rules]]\nallow = ['10.0.0.0/8', 'office']\n",
        2,
        "rules[1].allow",
        ['found "office"'],
    ),
    (
        "[[rules]]\nallow = ['::ffff:10.0.0.0/104']\n",
        2,
        "rules[1].allow",
        ["write IPv4-mapped networks as IPv4"],
    ),
    (
        "[[rules]]\nmatch.header_present = 'X Y'\ndeny = true\n",
        2,
        "rules[1].match.header_present",
        ["expected a header name", 'found "X Y"'],
    ),
    (
        "[[rules]]\nmatch.header_equals = { X-A = 1 }\ndeny = true\n",
        2,
        "rules[1].match.header_equals",
        ["expected a string as the value of X-A", "found integer 1"],
    ),
    (
        "[[rules]]\nmatch.header_regex = { X-A = '(' }\ndeny = true\n",
        2,
        "rules[1].match.header_regex",
        ["expected a Python regular expression"],
    ),
    (
        '[[rules]]\nrequest_headers.set = { X-A = "a\\r\\nInjected: 1" }\n',
        2,
        "rules[1].request_headers.set",
        ["X-A: a header value cannot contain \\u000d", 'found "a\\r\\nInjected: 1"'],
    ),
    (  # a bare LF alone must not pass either: the value goes on the wire raw (_parsed=True)
        '[[rules]]\nresponse_headers.set = { X-A = "a\\nSet-Cookie: evil=1" }\n',
        2,
        "rules[1].response_headers.set",
        ["X-A: a header value cannot contain \\u000a", "Set-Cookie: evil=1"],
    ),
    (
        '[[rules]]\nrequest_headers.add = { X-A = "a\\rb" }\n',
        2,
        "rules[1].request_headers.add",
        ["X-A: a header value cannot contain \\u000d"],
    ),
    (
        '[[rules]]\nmatch.path = "/x"\n'
        'respond = { status = 200, headers = { X-A = "a\\nB: c" } }\n',
        3,
        "rules[1].respond.headers",
        ["X-A: a header value cannot contain \\u000a"],
    ),
    (
        '[[rules]]\nrequest_headers.set = { X-A = "a\\u0000" }\n',
        2,
        "rules[1].request_headers.set",
        ["cannot contain \\u0000"],
    ),
    (
        '[[rules]]\nresponse_headers.add = { X-A = " a" }\n',
        2,
        "rules[1].response_headers.add",
        ["cannot start or end with whitespace"],
    ),
    (
        '[[rules]]\nresponse_headers.set = { "X:A" = "a" }\n',
        2,
        "rules[1].response_headers.set",
        ["expected a header name", 'found "X:A"'],
    ),
    (
        '[[rules]]\nresponse_headers.set = { X-A = "1", x-a = "2" }\n',
        2,
        "rules[1].response_headers.set",
        ['"X-A" and "x-a" name the same header'],
    ),
    (
        '[[rules]]\nresponse_headers.set = { Content-Length = "1" }\n',
        2,
        "rules[1].response_headers.set",
        ["Content-Length is managed by the proxy"],
    ),
    (
        '[[rules]]\nrequest_headers.remove = ["Connection"]\n',
        2,
        "rules[1].request_headers.remove",
        ["Connection is managed by the proxy"],
    ),
    (
        '[[rules]]\nrequest_headers.remove = ["host"]\n',
        2,
        "rules[1].request_headers.remove",
        ["exactly one Host: it can be set, not removed"],
    ),
    (
        '[[rules]]\nrequest_headers.put = { X-A = "1" }\n',
        2,
        "rules[1].request_headers.put",
        ["unknown key; request_headers allows: remove, set, add"],
    ),
    (
        '[[rules]]\nredirect = { to = "https://$hots/" }\n',
        2,
        "rules[1].redirect.to",
        ["unknown variable $hots; did you mean $host?", "variables: $host, $path, $query"],
    ),
    (
        '[[rules]]\nredirect = { to = "https://example.com/$" }\n',
        2,
        "rules[1].redirect.to",
        ['a lone "$" (write "$$" for a dollar sign)'],
    ),
    (
        '[[rules]]\nredirect = { to = "example.com/" }\n',
        2,
        "rules[1].redirect.to",
        ['expected a URL such as "https://$host$request_uri"', 'found "example.com/"'],
    ),
    (
        '[[rules]]\nredirect = { to = "https://example.com/a b" }\n',
        2,
        "rules[1].redirect.to",
        ['" " cannot appear in a URL'],
    ),
    (
        '[[rules]]\nredirect = { to = "/x/$1" }\n',
        2,
        "rules[1].redirect.to",
        ["$1 refers to a capture group, but match.path_regex is not set"],
    ),
    (
        "[[rules]]\nmatch.path_regex = '^/(a)/(?P<b>.)'\nredirect = { to = '/$3' }\n",
        3,
        "rules[1].redirect.to",
        ["$3: match.path_regex has no such group (groups: $0 to $2, ${b})"],
    ),
    (
        "[[rules]]\nmatch.path_regex = '^/(a)'\nrewrite = '/${name}'\n",
        3,
        "rules[1].rewrite",
        ["${name}: match.path_regex has no such group"],
    ),
    (
        '[[rules]]\nredirect = { to = "/x", status = 200 }\n',
        2,
        "rules[1].redirect.status",
        ["expected one of 301, 302, 303, 307, 308", "found integer 200"],
    ),
    ("[[rules]]\nredirect = { status = 301 }\n", 2, "rules[1].redirect.to", ["missing"]),
    (
        "[[rules]]\nrewrite = 'new/$1'\nmatch.path_regex = '(.*)'\n",
        2,
        "rules[1].rewrite",
        ['expected a path such as "/new/$1"'],
    ),
    (
        "[[rules]]\nrewrite = '/new?x=1'\n",
        2,
        "rules[1].rewrite",
        ['"?" cannot appear in a rewritten path (the query string is kept)'],
    ),
    (
        "[[rules]]\nmatch.path_regex = '^/(.*)'\nrewrite = '/new/$1$query'\n",
        3,
        "rules[1].rewrite",
        ["$query cannot appear in a rewrite: the query string is kept"],
    ),
    (
        "[[rules]]\nresponse_headers.add = { Link = [] }\n",
        2,
        "rules[1].response_headers.add",
        ["Link: expected a string or a non-empty array of strings, found []"],
    ),
    (
        "[[rules]]\nrespond = { status = 100 }\n",
        2,
        "rules[1].respond.status",
        ["expected a status from 200 to 599", "found integer 100"],
    ),
    (
        "[[rules]]\nrespond = { status = 204, body = 'x' }\n",
        2,
        "rules[1].respond.body",
        ["a 204 response has no body"],
    ),
    (
        "[[rules]]\n[rules.respond]\nbody = '''" + "x" * 70000 + "'''\n",
        3,
        "rules[1].respond.body",
        ["expected at most 65536 bytes, found 70000 bytes"],
    ),
    (
        "[[rules]]\nrespond = { headers = { Transfer-Encoding = 'chunked' } }\n",
        2,
        "rules[1].respond.headers",
        ["Transfer-Encoding is managed by the proxy"],
    ),
    (
        "[[rules]]\ndeny = false\n",
        2,
        "rules[1].deny",
        ["expected true (403) or a table", "found boolean false"],
    ),
    (
        "[[rules]]\ndeny = { status = 302 }\n",
        2,
        "rules[1].deny.status",
        ["expected a status from 400 to 599", "found integer 302"],
    ),
    (
        "[[rules]]\nrate_limit = { rate = 0, burst = 1 }\n",
        2,
        "rules[1].rate_limit.rate",
        ["expected a number from 0.001 to 1000000 (requests per second)", "found integer 0"],
    ),
    (
        "[[rules]]\nrate_limit = { rate = 1 }\n",
        2,
        "rules[1].rate_limit.burst",
        ["missing: a rate limit needs rate and burst"],
    ),
    (
        "[[rules]]\nrate_limit = { rate = 1, burst = 1.5 }\n",
        2,
        "rules[1].rate_limit.burst",
        ["expected an integer from 1 to 1000000", "found float 1.5"],
    ),
    (
        "[[rules]]\nredirect = { to = '/a' }\nrespond = {}\n",
        3,
        "rules[1].respond",
        ["a rule gives one answer; found both redirect and respond"],
    ),
    (
        "[[rules]]\nallow = ['10.0.0.0/8']\nrespond = {}\n",
        2,
        "rules[1].allow",
        ["cannot go with respond"],
    ),
    (
        "[[rules]]\ndeny = true\nrequest_headers.set = { X-A = '1' }\n",
        3,
        "rules[1].request_headers",
        ["has no effect: this rule answers every request it matches (deny)"],
    ),
    (
        "[[rules]]\nmatch.status = '5xx'\ndeny = true\n",
        2,
        "rules[1].match.status",
        ["only response_headers can depend on the status; found with deny"],
    ),
    (
        "[[rules]]\nmatch.status = [200, '6xx']\nresponse_headers.set = { A = 'b' }\n",
        2,
        "rules[1].match.status",
        ['expected a status (100 to 599), a class such as "5xx"'],
    ),
    (
        '[[rules]]\nname = "a\\nb"\ndeny = true\n',
        2,
        "rules[1].name",
        ["expected a one-line name"],
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "key_path", "fragments"), BAD_RULES, ids=[row[2] for row in BAD_RULES]
)
def test_bad_rules(text: str, line: int, key_path: str, fragments: list[str]) -> None:
    problems = problems_of(text)
    assert len(problems) == 1, problems
    (problem,) = problems
    assert (problem.line, problem.key_path) == (line, key_path)
    rendered = str(problem)
    assert rendered.startswith(f"{FILE}:{line}: {key_path}: ")
    assert "\n" not in rendered
    for fragment in fragments:
        assert fragment in rendered


def test_every_problem_of_every_rule_is_reported_in_order() -> None:
    text = (
        "[[rules]]\n"  # 1
        "match.path_regex = '('\n"  # 2
        "deny = { status = 200 }\n"  # 3
        "\n"
        "[[rules]]\n"  # 5
        "deny = true\n"
        "\n"
        "[[rules]]\n"  # 8
        "[rules.match]\n"  # 9
        "clients = ['nope']\n"  # 10
        "[rules.rate_limit]\n"  # 11
        "rate = -1\n"  # 12
        "burst = 1\n"
    )
    assert [(p.line, p.key_path) for p in problems_of(text)] == [
        (2, "rules[1].match.path_regex"),
        (3, "rules[1].deny.status"),
        (10, "rules[3].match.clients"),
        (12, "rules[3].rate_limit.rate"),
    ]


def test_validate_reports_rules_on_one_line_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / CONFIG_FILENAME
    path.write_text(
        "[[rules]]\ndeny = true\n"
        "[[rules]]\nmatch.path_regex = '['\ndeny = true\n"
        "[[rules]]\nmatch.path = '/a'\nrespond = {}\n"
    )
    assert validate_main([str(tmp_path)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{path}:4: rules[2].match.path_regex: expected a Python regular expression:"
        ' unterminated character set at position 0, found "["',
        f"{path}:6: rules[3]: never applies: rules[1] (line 1) answers every request this rule"
        " matches; move this rule above it, or narrow that rule's match",
    ]


# --- Rules that can never apply ----------------------------------------------------------------

UNREACHABLE = [
    # (id, rules (each a [[rules]] body), (later, earlier) positions or None)
    ("catch-all-first", ["deny = true", 'match.path = "/a"\ndeny = true'], (2, 1)),
    (
        "maintenance-first",
        ["respond = { status = 503 }", 'request_headers.set = { A = "1" }'],
        (2, 1),
    ),
    (
        "prefix-covers-exact",
        ['match.path_prefix = "/a/"\ndeny = true', 'match.path = "/a/b"\nrespond = {}'],
        (2, 1),
    ),
    (
        "prefix-covers-prefix",
        ['match.path_prefix = "/a"\ndeny = true', 'match.path_prefix = "/a/b"\ndeny = true'],
        (2, 1),
    ),
    (
        "regex-matches-the-exact-paths",
        [
            "match.path_regex = '^/(a|b)$'\ndeny = true",
            'match.path = ["/a", "/b"]\nrespond = {}',
        ],
        (2, 1),
    ),
    (
        "same-regex",
        [
            "match.path_regex = '^/x'\nredirect = { to = '/y' }",
            "match.path_regex = '^/x'\nmatch.methods = 'GET'\ndeny = true",
        ],
        (2, 1),
    ),
    (
        "methods-subset",
        ['match.methods = ["GET", "HEAD"]\ndeny = true', 'match.methods = "GET"\ndeny = true'],
        (2, 1),
    ),
    (
        "clients-covered",
        [
            'match.clients = "10.0.0.0/8"\ndeny = true',
            'match.clients = ["10.1.0.0/16", "10.2.3.4"]\nrespond = {}',
        ],
        (2, 1),
    ),
    (
        "headers-implied",
        [
            "match.header_regex = { X-Env = '^stag' }\ndeny = true",
            "match.header_equals = { X-Env = 'staging' }\nrespond = {}",
        ],
        (2, 1),
    ),
    (
        "header-presence-implied",
        [
            "match.header_present = 'x-env'\ndeny = true",
            "match.header_equals = { X-Env = 'a' }\nrespond = {}",
        ],
        (2, 1),
    ),
    (
        "redirect-with-host-and-hosts-later",
        [
            'match.scheme = "http"\nredirect = { to = "https://$host/" }',
            'match = { scheme = "http", hosts = "a.example" }\ndeny = true',
        ],
        (2, 1),
    ),
    (
        "response-only-rule-later",
        ["respond = {}", 'match.status = 404\nresponse_headers.set = { A = "1" }'],
        (2, 1),
    ),
    # Not certain: no problem.
    (
        "redirect-with-host-may-let-requests-on",
        ['redirect = { to = "https://$host/" }', "deny = true"],
        None,
    ),
    (
        "exact-then-prefix",
        ['match.path = "/a/b"\ndeny = true', 'match.path_prefix = "/a/"\ndeny = true'],
        None,
    ),
    ("gated-by-rate-limit", ["rate_limit = { rate = 1, burst = 1 }", "deny = true"], None),
    ("gated-by-allow", ['allow = "10.0.0.0/8"', "deny = true"], None),
    ("edits-do-not-answer", ['request_headers.set = { A = "1" }', "deny = true"], None),
    (
        "regex-does-not-cover",
        ["match.path_regex = '^/a$'\ndeny = true", 'match.path = ["/a", "/b"]\ndeny = true'],
        None,
    ),
    (
        "different-regexes-are-never-compared",
        ["match.path_regex = '^/a'\ndeny = true", "match.path_regex = '^/ab'\ndeny = true"],
        None,
    ),
    (
        "clients-not-covered",
        ['match.clients = "10.0.0.0/16"\ndeny = true', 'match.clients = "10.0.0.0/8"\ndeny = true'],
        None,
    ),
    (
        "earlier-has-a-condition-later-lacks",
        [
            'match = { path = "/a", hosts = "x.example" }\ndeny = true',
            'match.path = "/a"\ndeny = true',
        ],
        None,
    ),
    (
        "scheme-differs",
        ['match.scheme = "http"\ndeny = true', 'match.scheme = "https"\ndeny = true'],
        None,
    ),
]


@pytest.mark.parametrize(
    ("bodies", "expected"), [row[1:] for row in UNREACHABLE], ids=[row[0] for row in UNREACHABLE]
)
def test_unreachable_rules(bodies: list[str], expected: tuple[int, int] | None) -> None:
    text = "".join(f"[[rules]]\n{body}\n\n" for body in bodies)
    if expected is None:
        assert len(rules_of(text)) == len(bodies)
        return
    later, earlier = expected
    (problem,) = problems_of(text)
    assert problem.key_path == f"rules[{later}]"
    headers = [n for n, line in enumerate(text.splitlines(), start=1) if line == "[[rules]]"]
    assert problem.line == headers[later - 1]
    assert f"never applies: rules[{earlier}] (line " in problem.message


def test_unreachable_names_the_rule_by_name() -> None:
    (problem,) = problems_of(
        '[[rules]]\nname = "maintenance"\nrespond = { status = 503 }\n[[rules]]\ndeny = true\n'
    )
    assert str(problem) == (
        "t.toml:4: rules[2]: never applies: rules[1] (maintenance) (line 1) answers every"
        " request this rule matches; move this rule above it, or narrow that rule's match"
    )


# --- Properties: whatever the rules table holds, rules or problems, never a crash ----------------

RULE_KEYS = st.sampled_from(
    [
        "name",
        "match",
        "request_headers",
        "response_headers",
        "rewrite",
        "redirect",
        "respond",
        "deny",
        "allow",
        "rate_limit",
        "x",
    ]
)
SUB_KEYS = st.sampled_from(
    [
        "path",
        "path_prefix",
        "path_regex",
        "methods",
        "hosts",
        "scheme",
        "clients",
        "status",
        "header_present",
        "header_equals",
        "header_regex",
        "set",
        "add",
        "remove",
        "to",
        "body",
        "headers",
        "rate",
        "burst",
        "max_clients",
        "X-A",
    ]
)
LEAVES = (
    st.sampled_from(
        [
            *("/a", "/a/", "^/(x)$", "GET", "10.0.0.0/8", "http", "5xx", "$1", "https://$host/"),
            *("${n}", "(", "$", "a\r\n", "", "Host", "Connection", "X-A"),
        ]
    )
    | st.integers(-1, 1000)
    | st.booleans()
    | st.floats(allow_nan=True)
)
VALUES = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(SUB_KEYS, inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=300)
@given(st.lists(st.dictionaries(RULE_KEYS, VALUES, max_size=4), max_size=4))
def test_any_rules_give_rules_or_problems(tables: list[dict[str, Any]]) -> None:
    from trioproxy.config._config import settings_from_mapping

    try:
        loaded = settings_from_mapping({"rules": tables}, file=FILE, source_text=None).rules
    except ConfigError as error:
        assert error.problems
        assert all(p.key_path.startswith("rules") and "\n" not in str(p) for p in error.problems)
        return
    # Whatever loaded also evaluates.
    rules = RuleEngine(loaded)
    for target in ["/", "/a/x?y", "/x"]:
        rules.evaluate(view(target), 0.0)
