"""Helpers for the [[rules]] tests: load a rules table, make a request view, sum up a decision."""

from __future__ import annotations

from typing import Any

import pytest

from trioproxy.config._config import ConfigError, Problem, settings_from_bytes
from trioproxy.core._requestview import RequestView, request_view
from trioproxy.core._ruleengine import Decision, RuleEngine
from trioproxy.core._rulemodel import RuleSet

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


FORCE_HTTPS = """
[[rules]]
name = "force https"
match.scheme = "http"
redirect = { to = "https://$host$request_uri", status = 308 }
"""
