"""Running the real proxy inside a caller's Trio program: ``serve`` and ``running``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from functools import partial

import trio

from ..config._settings import Settings
from ..core._accesslog import AccessRecord, make_formatter
from ..core._addr import format_host_port
from ..core._rulemodel import HookAction, Rule, RuleSet
from ..engine._listen import open_listener
from ..engine._server import ProxyServer

AccessLogSink = Callable[[AccessRecord], None]


@dataclass
class RunningProxy:
    """A proxy serving in the caller's nursery.

    ``access_log`` holds the access-log lines written so far, parsed from the JSON the proxy
    would print (every value a string, as on stdout), when the proxy was started with
    ``capture_access_log=True``.
    """

    server: ProxyServer
    host: str
    port: int
    access_log: list[dict[str, str]] = field(default_factory=list)

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def url(self) -> str:
        return f"http://{format_host_port(self.host, self.port)}"

    def shutdown(self) -> None:
        """Stop accepting and drain, as SIGTERM does; ``serve`` returns when done."""
        self.server.shutdown()


async def serve(
    upstream: tuple[str, int],
    settings: Settings | None = None,
    *,
    listen: tuple[str, int] = ("127.0.0.1", 0),
    access_log: AccessLogSink | None = None,
    capture_access_log: bool = False,
    hooks: Mapping[str, object] | None = None,
    hook: object | None = None,
    task_status: trio.TaskStatus[RunningProxy] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled (or ``shutdown()`` and drained). Use with ``nursery.start``::

        proxy = await nursery.start(trioproxy.serve, ("127.0.0.1", 8000))
        print(proxy.url)

    ``listen`` defaults to an ephemeral loopback port. ``access_log`` receives each record;
    ``capture_access_log`` keeps the rendered lines on the returned handle instead.

    ``hooks`` gives hook objects (`trioproxy.hooks`) by name, for rules that name a hook
    without a file (``hook = { name = "check" }``); ``hook`` runs one hook on every request
    (a last rule, after the configured ones)::

        async def check(exchange):
            if not exchange.request.header("authorization"):
                exchange.respond(401)

        proxy = await nursery.start(partial(trioproxy.serve, upstream, hook=check))
    """
    settings, hooks = _with_hook(settings or Settings(), hooks, hook)
    listener = open_listener(*listen)
    lines: list[dict[str, str]] = []
    sink = access_log or (_capture(settings, lines) if capture_access_log else _discard)
    server = ProxyServer(settings, upstream, sink, hooks=hooks)
    host, port = listener.socket.getsockname()[:2]
    handle = RunningProxy(server, host, port, lines)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run, [listener])
        task_status.started(handle)


@asynccontextmanager
async def running(
    upstream: tuple[str, int],
    settings: Settings | None = None,
    *,
    listen: tuple[str, int] = ("127.0.0.1", 0),
    access_log: AccessLogSink | None = None,
    capture_access_log: bool = False,
    hooks: Mapping[str, object] | None = None,
    hook: object | None = None,
) -> AsyncIterator[RunningProxy]:
    """The proxy for the duration of an ``async with`` block; leaving it shuts the proxy down
    (in-flight exchanges are cancelled, every socket is closed)."""
    async with trio.open_nursery() as nursery:
        proxy: RunningProxy = await nursery.start(
            partial(
                serve,
                upstream,
                settings,
                listen=listen,
                access_log=access_log,
                capture_access_log=capture_access_log,
                hooks=hooks,
                hook=hook,
            )
        )
        try:
            yield proxy
        finally:
            nursery.cancel_scope.cancel()


_EVERY_REQUEST = "<every request>"


def _with_hook(
    settings: Settings, hooks: Mapping[str, object] | None, hook: object | None
) -> tuple[Settings, Mapping[str, object] | None]:
    if hook is None:
        return settings, hooks
    rules = settings.rules.rules
    last = Rule(len(rules) + 1, name="hook=", actions=(HookAction("", _EVERY_REQUEST),))
    settings = replace(settings, rules=RuleSet((*rules, last)))
    return settings, {**(hooks or {}), _EVERY_REQUEST: hook}


def _capture(settings: Settings, lines: list[dict[str, str]]) -> AccessLogSink:
    render = make_formatter("json", settings.access_log.fields)

    def sink(record: AccessRecord) -> None:
        lines.append(json.loads(render(record)))

    return sink


def _discard(record: AccessRecord) -> None:
    pass
