"""Hooks through the real engine on the memory network: what each hook point may do, the
rule order, deadlines and errors, blocking calls named, lifespans, reload and cancellation."""

from __future__ import annotations

import logging
import textwrap
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from trioproxy.config._config import load_settings
from trioproxy.config._settings import Settings
from trioproxy.core._rulemodel import HookAction, Rule, RuleSet
from trioproxy.hooks import Exchange, HookError, ResponseHead

from ..memnet import MemoryProxy, ScriptedOrigin, memory_proxy, wait_until


@asynccontextmanager
async def hooked(
    settings: Settings, hooks: Mapping[str, object] | None = None
) -> AsyncIterator[tuple[MemoryProxy, ScriptedOrigin]]:
    origin = ScriptedOrigin()
    async with memory_proxy(settings, origin=origin, hooks=hooks) as proxy:
        yield proxy, origin


def one_hook(
    name: str, hook: object, **action: Any
) -> AbstractAsyncContextManager[tuple[MemoryProxy, ScriptedOrigin]]:
    """`hooked` with one embedded hook, ``name``, on every request (``action``: its
    ``timeout_s``, ``on_error``)."""
    return hooked(embedded((name, {}), **action), {name: hook})


def embedded(*rules: tuple[str, dict[str, Any]], **hook: Any) -> Settings:
    """Settings whose rules each run an embedded hook: (name, rule fields)."""
    built = []
    for position, (name, fields) in enumerate(rules, start=1):
        action = HookAction("", name, hook.get("timeout_s", 1.0), hook.get("on_error", 0))
        built.append(Rule(position=position, actions=(action,), **fields))
    return Settings(rules=RuleSet(tuple(built)))


def from_files(tmp_path: Path, toml: str, **files: str) -> Settings:
    (tmp_path / "hooks").mkdir(exist_ok=True)
    for name, text in files.items():
        (tmp_path / "hooks" / f"{name}.py").write_text(textwrap.dedent(text))
    (tmp_path / "trioproxy.toml").write_text(textwrap.dedent(toml))
    return load_settings(tmp_path)


AUTH = """
    from trioproxy.hooks import Exchange

    async def check(exchange: Exchange) -> None:
        if exchange.request.header("authorization") != "Bearer good":
            exchange.respond(401, "token required\\n", {"WWW-Authenticate": "Bearer"})
"""


async def test_a_token_check_answers_401_without_asking_the_origin(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    settings = from_files(
        tmp_path,
        """
        [[rules]]
        match.path_prefix = "/admin"
        hook = { file = "hooks/auth.py", name = "check", timeout_s = 0.2 }
        """,
        auth=AUTH,
    )
    async with hooked(settings) as (proxy, origin):
        async with proxy.client() as client:
            denied = await client.request(b"GET", b"/admin/x")
            allowed = await client.request(
                b"GET", b"/admin/small", [(b"Authorization", b"Bearer good")]
            )
            elsewhere = await client.request(b"GET", b"/small")
    assert (denied.status, denied.body) == (401, b"token required\n")
    assert denied.header(b"www-authenticate") == b"Bearer"
    assert denied.header(b"x-request-id")
    assert (allowed.status, elsewhere.status) == (200, 200)
    assert origin.targets == [b"/admin/small", b"/small"]


async def test_request_edits_reach_the_origin_and_response_edits_the_client(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def ab(exchange: Exchange) -> None:
        bucket = exchange.request.cookie("ab") or "a"
        exchange.rewrite(f"/small?bucket={bucket}")
        exchange.set_request_header("X-Bucket", bucket)
        exchange.set_response_header("X-Bucket", bucket)
        exchange.log("ab_bucket", bucket)

    settings = embedded(("ab", {}))
    async with hooked(settings, {"ab": ab}) as (proxy, origin):
        async with proxy.client() as client:
            reply = await client.request(b"GET", b"/page", [(b"Cookie", b"x=1; ab=b")])
        await proxy.logged(1)
    assert reply.status == 200 and reply.header(b"x-bucket") == b"b"
    assert origin.targets == [b"/small?bucket=b"]
    assert (b"X-Bucket", b"b") in origin.heads[0].headers.raw_items()
    assert proxy.records[0].extra == (("ab_bucket", "b"),)


class Computed:
    async def response(self, exchange: Exchange, response: ResponseHead) -> None:
        exchange.set_response_header("X-Origin-Status", str(response.status))
        if exchange.request.path == "/replace":
            exchange.respond(503, '{"error": "maintenance"}', {"Content-Type": "application/json"})

    async def access(self, exchange: Exchange, status: int) -> None:
        exchange.log("ua_family", (exchange.request.header("user-agent") or "-").split("/")[0])


async def test_the_response_head_is_edited_or_replaced_and_the_access_line_extended(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with one_hook("computed", Computed()) as (proxy, _origin):
        async with proxy.client() as client:
            edited = await client.request(b"GET", b"/small", [(b"User-Agent", b"curl/8")])
            replaced = await client.request(b"GET", b"/replace")
            after = await client.request(b"GET", b"/small")
        await proxy.logged(3)
    assert (edited.status, edited.body, edited.header(b"x-origin-status")) == (200, b"ok", b"200")
    assert replaced.status == 503 and replaced.json() == {"error": "maintenance"}
    assert replaced.header(b"content-type") == b"application/json"
    assert after.status == 200
    assert proxy.records[0].extra == (("ua_family", "curl"),)
    assert (proxy.records[1].status, proxy.records[1].upstream_status) == (503, 200)
    proxy.check_no_leak()


async def sleeps(exchange: Exchange) -> None:
    await trio.sleep(10)


async def fails(exchange: Exchange) -> None:
    raise RuntimeError("boom")


async def frames(exchange: Exchange) -> None:
    exchange.set_response_header("Content-Length", "5")


@pytest.mark.parametrize("hook", [sleeps, fails])
@pytest.mark.parametrize("on_error", [0, 503])
async def test_a_hook_that_fails_or_times_out_applies_on_error_and_is_named(
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
    hook: Any,
    on_error: int,
) -> None:
    settings = embedded(("h", {}), timeout_s=0.5, on_error=on_error)
    async with hooked(settings, {"h": hook}) as (proxy, _origin):
        async with proxy.client() as client:
            reply = await client.request(b"GET", b"/small")
    assert reply.status == (on_error or 200)
    request_id = reply.header(b"x-request-id")
    assert request_id is not None
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("hook h:")]
    assert len(lines) == 1 and request_id.decode() in lines[0], lines
    stats = proxy.server.hook_stats["h"]
    assert (stats.calls, stats.errors + stats.timeouts) == (1, 1)


def test_a_hook_cannot_touch_framing_hop_by_hop_fields_or_inject_control_characters() -> None:
    from trioproxy.hooks import Request

    exchange = Exchange(Request("GET", "/", "/", (), "1.2.3.4", "http", "id"))
    for refused in (
        lambda: exchange.set_response_header("Content-Length", "5"),
        lambda: exchange.set_request_header("Transfer-Encoding", "chunked"),
        lambda: exchange.add_response_header("Connection", "close"),
        lambda: exchange.set_request_header("X-A", "a\r\nX-Injected: 1"),
        lambda: exchange.set_request_header("Bad Name", "x"),
        lambda: exchange.rewrite("http://elsewhere/"),
        lambda: exchange.rewrite("/a b"),
        lambda: exchange.respond(101),
        lambda: exchange.log("status", "x"),
    ):
        with pytest.raises(HookError):
            refused()  # type: ignore[no-untyped-call]  # (a tuple of lambdas)


async def test_a_refused_edit_is_the_hooks_error(autojump_clock: trio.testing.MockClock) -> None:
    settings = embedded(("h", {}), on_error=502)
    async with hooked(settings, {"h": frames}) as (proxy, origin):
        async with proxy.client() as client:
            reply = await client.request(b"GET", b"/small")
    assert reply.status == 502 and origin.targets == []


async def test_the_first_answer_wins_in_rule_order(autojump_clock: trio.testing.MockClock) -> None:
    from trioproxy.core._answers import text_response

    called: list[str] = []

    async def teapot(exchange: Exchange) -> None:
        called.append(exchange.request.path)
        if exchange.request.path == "/hook-answers":
            exchange.respond(418)

    # rules[1]: /static answers 410 before the hook; rules[2]: the hook; rules[3]: 404 for all
    settings = Settings(
        rules=RuleSet(
            (
                Rule(1, respond=text_response(410), match=_paths(b"/static")),
                Rule(2, actions=(HookAction("", "teapot"),)),
                Rule(3, respond=text_response(404)),
            )
        )
    )
    async with hooked(settings, {"teapot": teapot}) as (proxy, origin):
        async with proxy.client() as client:
            static = await client.request(b"GET", b"/static")
            answered = await client.request(b"GET", b"/hook-answers")
            later = await client.request(b"GET", b"/other")
    assert (static.status, answered.status, later.status) == (410, 418, 404)
    assert called == ["/hook-answers", "/other"]
    assert origin.targets == []


def _paths(*paths: bytes) -> Any:
    from trioproxy.core._rulemodel import Match

    return Match(paths=frozenset(paths))


async def test_a_request_no_hook_rule_matches_never_reaches_the_hooks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from trioproxy.core._ruleengine import PASS

    async def never(exchange: Exchange) -> None:
        raise AssertionError("called")

    settings = embedded(("never", {"match": _paths(b"/only")}))
    async with hooked(settings, {"never": never}) as (proxy, _origin):
        async with proxy.client() as client:
            assert (await client.request(b"GET", b"/small")).status == 200
        engine = proxy.server.ctx.rule_engine
        from trioproxy.core._requestview import request_view

        view = request_view(b"GET", b"/small", [(b"Host", b"x")], "1.2.3.4")
        assert engine.evaluate(view, 0.0) is PASS
    assert proxy.server.hook_stats["never"].calls == 0


async def test_a_hook_that_blocks_the_loop_is_named_while_it_blocks_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def blocks(exchange: Exchange) -> None:
        time.sleep(0.3)  # noqa: ASYNC251 (the mistake being caught)

    settings = embedded(("blocks", {}))
    async with hooked(settings, {"blocks": blocks}) as (proxy, _origin):
        async with proxy.client() as client:
            reply = await client.request(b"GET", b"/small")
    assert reply.status == 200
    # "is blocking": the watchdog's line, written only while the step is still running.
    lines = [r.getMessage() for r in caplog.records if "event loop" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("hook blocks is blocking"), lines
    assert reply.header(b"x-request-id").decode() in lines[0]  # type: ignore[union-attr]
    assert proxy.server.hook_stats["blocks"].slow_steps == 1


async def test_lifespans_start_with_the_proxy_and_are_cancelled_by_a_reload(
    autojump_clock: trio.testing.MockClock,
) -> None:
    events: list[str] = []

    class Keys:
        def __init__(self, name: str) -> None:
            self.name = name

        async def lifespan(self, nursery: trio.Nursery) -> None:
            nursery.start_soon(self._refresh)

        async def _refresh(self) -> None:
            events.append(f"{self.name} started")
            try:
                await trio.sleep_forever()
            finally:
                events.append(f"{self.name} cancelled")

        async def request(self, exchange: Exchange) -> None:
            exchange.set_response_header("X-Hook", self.name)

    hooks = {"old": Keys("old"), "new": Keys("new")}
    async with hooked(embedded(("old", {})), hooks) as (proxy, _origin):
        await trio.testing.wait_all_tasks_blocked()
        assert events == ["old started"]
        async with proxy.client() as client:
            before = await client.request(b"GET", b"/small")
            proxy.server.reload(embedded(("new", {})), proxy.log)
            after = await client.request(b"GET", b"/small")
        await trio.testing.wait_all_tasks_blocked()
        assert events == ["old started", "old cancelled", "new started"]
    assert events[-1] == "new cancelled"
    assert (before.header(b"x-hook"), after.header(b"x-hook")) == (b"old", b"new")


async def test_a_client_gone_while_a_hook_awaits_leaves_nothing_behind(
    autojump_clock: trio.testing.MockClock,
) -> None:
    entered = trio.Event()

    async def slow(exchange: Exchange) -> None:
        entered.set()
        await trio.sleep(5)

    settings = embedded(("slow", {}), timeout_s=10)
    async with hooked(settings, {"slow": slow}) as (proxy, _origin):
        async with proxy.client() as client:
            await client.stream.send_all(b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n")
            await entered.wait()
        await proxy.logged(1)
        await proxy.settled()
        proxy.check_no_leak()


async def test_a_hook_file_that_fails_to_load_rejects_the_reload(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    from trioproxy.hooks._load import HookLoadError

    toml = """
        [[rules]]
        hook = { file = "hooks/h.py", name = "h" }
        """
    good = from_files(tmp_path, toml, h=AUTH.replace("check", "h"))
    broken = from_files(
        tmp_path, toml, h="import no_such_module\nasync def h(exchange):\n    pass\n"
    )
    async with hooked(good) as (proxy, _origin):
        with pytest.raises(HookLoadError, match=r"hooks/h.py:1: importing failed"):
            proxy.server.reload(broken, proxy.log)
        async with proxy.client() as client:
            assert (await client.request(b"GET", b"/small")).status == 401  # the old hook


logging.getLogger("trioproxy")  # (the logger the lines above are read from)


async def test_a_failed_hook_with_on_error_pass_leaves_no_half_made_edit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def half(exchange: Exchange) -> None:
        exchange.set_request_header("X-Half", "1")
        exchange.set_response_header("X-Half", "1")
        exchange.rewrite("/elsewhere")
        raise RuntimeError("after the edits")

    async with one_hook("half", half) as (proxy, origin):
        async with proxy.client() as client:
            reply = await client.request(b"GET", b"/small")
    assert reply.status == 200 and reply.header(b"x-half") is None
    assert origin.targets == [b"/small"]
    assert all(name.lower() != b"x-half" for name, _ in origin.heads[0].headers.raw_items())


async def test_a_hooks_answer_to_head_is_the_head_alone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def answers(exchange: Exchange) -> None:
        exchange.respond(200, "made by the hook\n")

    async with one_hook("answers", answers) as (proxy, origin):
        async with proxy.client() as client:
            head = await client.request(b"HEAD", b"/")
            get = await client.request(b"GET", b"/")  # in step: no stray body before it
    assert (head.status, head.body, head.header(b"content-length")) == (200, b"", b"17")
    assert (get.status, get.body) == (200, b"made by the hook\n")
    assert origin.targets == []


async def test_the_metrics_snapshot_counts_each_hook(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from trioproxy.engine._collector import ProxyCollector
    from trioproxy.engine._exposition import exposition

    settings = embedded(("h", {}), timeout_s=0.5)
    async with hooked(settings, {"h": sleeps}) as (proxy, _origin):
        async with proxy.client() as client:
            await client.request(b"GET", b"/small")
            await client.request(b"GET", b"/small")
        snapshot = ProxyCollector(proxy.server.ctx).snapshot()
    (series,) = snapshot.hooks
    assert series[:5] == ("h", 2, 0, 2, 0) and series[5] == pytest.approx(1.0)
    assert b'trioproxy_hook_timeouts_total{hook="h"} 2.0' in exposition(snapshot)


async def test_a_replaced_hooks_lifespan_ends_when_its_last_request_is_done(
    autojump_clock: trio.testing.MockClock,
) -> None:
    events: list[str] = []
    release = trio.Event()

    class Old:
        async def lifespan(self, nursery: trio.Nursery) -> None:
            nursery.start_soon(self._background)

        async def _background(self) -> None:
            try:
                await trio.sleep_forever()
            finally:
                events.append("old lifespan ended")

        async def request(self, exchange: Exchange) -> None:
            events.append("old hook waits")
            await release.wait()

    async def new(exchange: Exchange) -> None:
        pass

    hooks = {"old": Old(), "new": new}
    async with hooked(embedded(("old", {}), timeout_s=30), hooks) as (proxy, _origin):
        async with proxy.client() as client, trio.open_nursery() as nursery:
            nursery.start_soon(client.request, b"GET", b"/small")
            await wait_until(lambda: events == ["old hook waits"])
            proxy.server.reload(embedded(("new", {})), proxy.log)
            await trio.sleep(1)
            assert events == ["old hook waits"]  # its request is still in flight
            release.set()
            await proxy.logged(1)
            await trio.testing.wait_all_tasks_blocked()
            # At once, not after the drain_s grace that bounds it.
            assert events == ["old hook waits", "old lifespan ended"]


async def test_a_lifespan_task_that_blocks_is_named_too(caplog: pytest.LogCaptureFixture) -> None:
    done = trio.Event()

    class Refresher:
        async def lifespan(self, nursery: trio.Nursery) -> None:
            nursery.start_soon(self._refresh)

        async def _refresh(self) -> None:
            await trio.lowlevel.checkpoint()
            time.sleep(0.2)  # noqa: ASYNC251 (the mistake being caught)
            done.set()

        async def request(self, exchange: Exchange) -> None:
            pass

    async with one_hook("refresher", Refresher()) as (proxy, _):
        await done.wait()
    lines = [r.getMessage() for r in caplog.records if "event loop" in r.getMessage()]
    assert lines and lines[0].startswith("hook refresher is blocking the event loop"), lines
    assert "(request lifespan)" in lines[0]
    assert proxy.server.hook_stats["refresher"].slow_steps == 1
