"""The command's options: flag, else variable, else default, each checked the same way (pure)."""

from __future__ import annotations

import pytest

from trioproxy.config._options import OptionError, parse_upstream, parse_workers, resolve

NO_FLAGS: dict[str, str | None] = {
    "listen": None,
    "upstream": None,
    "config_dir": None,
    "workers": None,
    "log_level": None,
    "log_format": None,
}


def test_defaults_are_the_platform_contract() -> None:
    values, explicit = resolve(NO_FLAGS, {})
    assert values["listen"] == ("0.0.0.0", 80)
    assert values["upstream"] == ("next-hop", 80)
    assert values["config_dir"] == "/opt/proxy_config"
    assert values["workers"] == 1
    assert values["log_level"] == "info"
    assert explicit == set()


def test_a_flag_wins_over_its_variable() -> None:
    flags = {**NO_FLAGS, "workers": "3"}
    values, explicit = resolve(flags, {"TRIOPROXY_WORKERS": "5", "TRIOPROXY_LOG_LEVEL": "debug"})
    assert (values["workers"], values["log_level"]) == (3, "debug")
    assert explicit == {"workers", "log_level"}


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("TRIOPROXY_WORKERS", "abc", "TRIOPROXY_WORKERS: expected a whole number of at least 1"),
        ("TRIOPROXY_LOG_LEVEL", "loud", "TRIOPROXY_LOG_LEVEL: expected one of debug, info"),
        ("TRIOPROXY_LISTEN", "bogus", "TRIOPROXY_LISTEN: expected HOST:PORT, got 'bogus'"),
        ("TRIOPROXY_UPSTREAM", "http://o:80", "TRIOPROXY_UPSTREAM: expected HOST:PORT, not a URL"),
        ("TRIOPROXY_LOG_FORMAT", "xml", "TRIOPROXY_LOG_FORMAT: expected one of"),
    ],
)
def test_a_bad_variable_is_named(variable: str, value: str, message: str) -> None:
    with pytest.raises(OptionError) as caught:
        resolve(NO_FLAGS, {variable: value})
    assert str(caught.value).startswith(message)


def test_a_bad_flag_is_named_not_its_variable() -> None:
    with pytest.raises(OptionError, match=r"^--listen: expected HOST:PORT"):
        resolve({**NO_FLAGS, "listen": "bogus"}, {"TRIOPROXY_LISTEN": "127.0.0.1:0"})


def test_options_a_command_does_not_offer_are_left_out() -> None:
    values, _ = resolve({"listen": None}, {"TRIOPROXY_WORKERS": "abc"})
    assert values == {"listen": ("0.0.0.0", 80)}


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("http://foo:80", "try 'foo:80'"),
        ("https://foo/path", "try 'foo'"),
        ("foo", "expected HOST:PORT, got 'foo'"),
        ("foo:0", "from 1 to 65535"),
        ("foo:65536", "from 1 to 65535"),
        ("foo:8o", "port must be a number"),
        (":80", "missing host"),
    ],
)
def test_upstream_is_host_and_port_only(text: str, hint: str) -> None:
    with pytest.raises(ValueError, match=hint):
        parse_upstream(text)


@pytest.mark.parametrize("text", ["next-hop:80", "127.0.0.1:1", "[::1]:65535"])
def test_upstream_accepts(text: str) -> None:
    host, port = parse_upstream(text)
    assert 1 <= port <= 65535 and host


@pytest.mark.parametrize("text", ["0", "-3", "1.5", "", "two", "٣"])
def test_workers_below_one_or_not_a_count(text: str) -> None:
    with pytest.raises(ValueError, match="at least 1 or 'auto'"):
        parse_workers(text)


def test_workers_count_or_auto() -> None:
    assert parse_workers("4") == 4
    assert parse_workers("auto") is None
