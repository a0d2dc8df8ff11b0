"""The request a hook reads when the rules needed no view of it (a hook on every request):
made when the hook first reads it, from the request as received, whatever a rule or hook
rewrote since; the same as the view conditions see."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from trioproxy.config._settings import Settings
from trioproxy.core._rulemodel import HookAction, Rule, RuleSet
from trioproxy.hooks import Exchange

from ..memnet import ScriptedOrigin, memory_proxy


def _on_every_request(*names: str, **fields: Any) -> Settings:
    rules = [
        Rule(position=i, actions=(HookAction("", name),), **fields)
        for i, name in enumerate(names, start=1)
    ]
    return Settings(rules=RuleSet(tuple(rules)))


def _seen(exchange: Exchange) -> tuple[str, ...]:
    request = exchange.request
    return (
        request.method,
        request.target,
        request.path,
        request.client,
        request.scheme,
        request.header("x-seen") or "-",
    )


async def _through(settings: Settings, hooks: dict[str, object], target: bytes) -> ScriptedOrigin:
    origin = ScriptedOrigin()
    async with memory_proxy(settings, origin=origin, hooks=hooks) as proxy:
        async with proxy.client() as client:
            reply = await client.request(
                b"GET", target, [(b"X-Seen", b"yes"), (b"X-Forwarded-Proto", b"https")]
            )
        await proxy.logged(1)
    assert reply.status == 200
    return origin


async def test_a_hook_reads_the_request_as_received_with_its_path_normalised(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[tuple[str, ...]] = []

    async def reads(exchange: Exchange) -> None:
        seen.append(_seen(exchange))

    for target in (b"/small?x=1", b"/a/..//%73mall?x=1"):  # with no view made, and with one
        await _through(_on_every_request("reads"), {"reads": reads}, target)
    client = seen[0][3]
    assert seen == [
        ("GET", "/small?x=1", "/small", client, "https", "yes"),
        ("GET", "/a/..//%73mall?x=1", "/small", client, "https", "yes"),
    ]


async def test_a_later_point_reads_the_target_received_not_the_rewrite(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[tuple[str, ...]] = []

    async def rewrites(exchange: Exchange) -> None:
        exchange.rewrite("/small?rewritten")

    class ReadsLater:
        async def access(self, exchange: Exchange, status: int) -> None:
            seen.append(_seen(exchange))

    hooks: dict[str, object] = {"rewrites": rewrites, "later": ReadsLater()}
    origin = await _through(_on_every_request("rewrites", "later"), hooks, b"/page")
    assert origin.targets == [b"/small?rewritten"]
    assert [s[1:3] for s in seen] == [("/page", "/page")]


async def test_odd_targets_reach_a_hook_on_every_request_as_the_rules_see_them(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[tuple[str, ...]] = []

    async def reads(exchange: Exchange) -> None:
        seen.append(_seen(exchange)[1:3])

    targets = (
        b"http://test.example/a/./b?q=%2e",  # absolute-form: the origin-form it names
        b"http://test.example/plain",
        b"/.well-known/section-io/aee-hc/x",  # a health check: no rule, so no hook
        b"/.well-known/x/../section-io/aee-hc/x",
    )
    for target in targets:
        await _through(_on_every_request("reads"), {"reads": reads}, target)
    assert seen == [("/a/./b?q=%2e", "/a/b"), ("/plain", "/plain")]
