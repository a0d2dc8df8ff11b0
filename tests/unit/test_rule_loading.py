"""[[rules]] loading and validation (`config/_config`, `config/_validate`): good files, bad
files with one problem each, rules that can never apply, and any table giving rules or
problems, never a crash. Pure. (Formerly test_rules.py, which also held evaluation, rate
limits and the pieces: now test_rule_evaluation, test_ratelimit, test_requestview,
test_rulemodel.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trioproxy.config._config import CONFIG_FILENAME, ConfigError, settings_from_bytes
from trioproxy.config._settings import Settings
from trioproxy.config._validate import main as validate_main
from trioproxy.core._ruleengine import RuleEngine
from trioproxy.core._rulemodel import RuleSet

from .rules_support import FILE, FORCE_HTTPS, problems_of, rules_of, view

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
