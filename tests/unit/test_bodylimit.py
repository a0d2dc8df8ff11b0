"""The request body limit's pure parts: which limit applies, the 413, the chunk sizes counted,
the global key and the [[rules]] key (loaded, validated, carried by the Decision)."""

from __future__ import annotations

import pytest

from trioproxy.config._config import ConfigError, settings_from_bytes
from trioproxy.config._configdump import render_toml
from trioproxy.core._bodylimit import BodyTooLarge, body_limit, check_body_size
from trioproxy.core._chunked import ChunkedChecker
from trioproxy.core._requestview import request_view
from trioproxy.core._ruleengine import PASS, RuleEngine

FILE = "t.toml"


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        settings_from_bytes(text.encode(), file=FILE)
    return [str(problem) for problem in caught.value.problems]


def test_a_rule_limit_wins_over_the_global_one_even_zero() -> None:
    assert body_limit(1000, None) == 1000
    assert body_limit(1000, 50) == 50
    assert body_limit(1000, 0) == 0  # an upload path lifted out of the global limit
    assert body_limit(0, None) == 0


def test_only_a_size_over_a_set_limit_is_refused_with_413() -> None:
    check_body_size(1000, 1000, chunked=False)
    check_body_size(10**12, 0, chunked=False)  # 0: no limit
    with pytest.raises(BodyTooLarge) as caught:
        check_body_size(1001, 1000, chunked=False)
    assert caught.value.status == 413
    assert str(caught.value) == (
        "request body of 1001 bytes by its Content-Length, over the limit of 1000"
    )
    with pytest.raises(BodyTooLarge, match="announced in chunks so far"):
        check_body_size(1001, 1000, chunked=True)


def test_the_chunked_checker_counts_announced_sizes_before_their_data() -> None:
    checker = ChunkedChecker()
    checker.feed(b"5\r\nhello\r\n")  # a whole chunk in view (the fast path)
    assert checker.declared == 5
    checker.feed(b"400\r\n")  # a size line alone: counted before any of its data
    assert checker.declared == 5 + 0x400
    checker.feed(b"x" * 0x400 + b"\r\n0\r\n\r\n")
    assert (checker.declared, checker.done) == (5 + 0x400, True)


def test_the_global_key_defaults_to_no_limit_and_is_validated() -> None:
    settings = settings_from_bytes(b"", file=FILE)
    assert settings.limits.max_request_body_bytes == 0
    assert "max_request_body_bytes = 0\n" in render_toml(settings)
    text = "[limits]\nmax_request_body_bytes = 1048576\n"
    assert settings_from_bytes(text.encode(), file=FILE).limits.max_request_body_bytes == 1 << 20
    assert problems("[limits]\nmax_request_body_bytes = -1\n") == [
        "t.toml:2: limits.max_request_body_bytes:"
        " expected an integer from 0 to 1099511627776 (bytes), found -1"
    ]


UPLOAD_RULES = """
[[rules]]
match = { path_prefix = "/upload/" }
max_request_body_bytes = 0

[[rules]]
match = { path_prefix = "/" }
max_request_body_bytes = 1000
"""


def decision_for(rules: str, path: str):  # type: ignore[no-untyped-def]
    engine = RuleEngine(settings_from_bytes(rules.encode(), file=FILE).rules)
    view = request_view(b"POST", path.encode(), [(b"Host", b"example.com")], "10.0.0.1")
    return engine.evaluate(view, 0.0)


def test_the_first_matching_rule_with_a_limit_decides() -> None:
    assert decision_for(UPLOAD_RULES, "/upload/big").max_request_body_bytes == 0
    assert decision_for(UPLOAD_RULES, "/api").max_request_body_bytes == 1000
    other = '[[rules]]\nmatch = { path = "/x" }\nmax_request_body_bytes = 5\n'
    assert decision_for(other, "/y") is PASS  # no rule matched: the global limit


def test_the_limit_is_kept_with_other_edits_and_in_the_config_dump() -> None:
    rules = '[[rules]]\nrewrite = "/v2$path"\nmax_request_body_bytes = 7\n'
    decision = decision_for(rules, "/a")
    assert (decision.target, decision.max_request_body_bytes) == (b"/v2/a", 7)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (
            "max_request_body_bytes = -5",
            "t.toml:3: rules[1].max_request_body_bytes:"
            " expected an integer from 0 to 1099511627776 (bytes; 0: no limit), found integer -5",
        ),
        (
            'max_request_body_bytes = "1m"',
            "t.toml:3: rules[1].max_request_body_bytes:"
            ' expected an integer from 0 to 1099511627776 (bytes; 0: no limit), found string "1m"',
        ),
        (
            "max_request_body_bytes = 10\nrespond = { status = 200 }",
            "t.toml:3: rules[1].max_request_body_bytes:"
            " has no effect: this rule answers every request it matches (respond)",
        ),
        (
            "max_request_body_byte = 10",
            "t.toml:3: rules[1].max_request_body_byte:"
            " unknown key; did you mean 'rules[1].max_request_body_bytes'?",
        ),
    ],
)
def test_rule_key_problems_are_worded(rule: str, expected: str) -> None:
    found = problems(f'[[rules]]\nmatch = {{ path = "/x" }}\n{rule}\n')
    assert expected in found, found


def test_a_rule_with_only_a_limit_is_a_rule_with_an_action() -> None:
    rules = settings_from_bytes(
        b'[[rules]]\nmatch = { path = "/x" }\nmax_request_body_bytes = 10\n', file=FILE
    ).rules
    assert rules.rules[0].max_request_body_bytes == 10
