"""Running the real proxy inside a caller's Trio program: ``serve`` and ``running``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import trio

from ..config._faultconfig import parse_runtime_fault
from ..config._settings import Settings
from ..core._accesslog import AccessRecord, make_formatter
from ..core._addr import format_host_port
from ..core._faults import Fault
from ..core._faulttable import RuntimeFault
from ..core._rulemodel import HookAction, Match, Rule, RuleSet
from ..engine._journal import LiveJournal
from ..engine._listen import open_listener
from ..engine._server import ProxyServer

AccessLogSink = Callable[[AccessRecord], None]


@dataclass
class RunningProxy:
    """A proxy serving in the caller's nursery.

    ``access_log`` holds the access-log lines written so far, parsed from the JSON the proxy
    would print (every value a string, as on stdout), when the proxy was started with
    ``capture_access_log=True``. ``journal`` holds the last exchanges when the proxy keeps a
    journal (``journal_size``); ``fault`` adds a fault for the length of a block.
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

    @property
    def journal(self) -> LiveJournal:
        if self.server.journal is None:
            raise RuntimeError("this proxy keeps no journal: start it with journal_size=N")
        return self.server.journal

    @asynccontextmanager
    async def fault(
        self,
        fault: Fault | None = None,
        /,
        *,
        match: Mapping[str, Any] | None = None,
        **keys: Any,
    ) -> AsyncIterator[RuntimeFault]:
        """Carry out a fault for the block (Toxiproxy's ``apply``), on the requests ``match``
        selects (a rule's ``match`` table; all by default)::

            async with proxy.fault(kind="reset", at="after_head", first=2):
                ...

        ``keys`` are a rule's ``fault`` keys, checked as the configuration's are (a bad one
        raises `ValueError` naming it); or pass a `Fault`. The handle counts the requests
        the fault has seen (``.state.seen``) and was applied to (``.state.applied``)."""
        added = self.server.faults.add(*_runtime_fault(fault, match, keys))
        try:
            yield added
        finally:
            self.server.faults.remove(added.name)


async def serve(
    upstream: tuple[str, int],
    settings: Settings | None = None,
    *,
    listen: tuple[str, int] = ("127.0.0.1", 0),
    access_log: AccessLogSink | None = None,
    capture_access_log: bool = False,
    journal_size: int | None = None,
    journal_body_bytes: int | None = None,
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

    ``journal_size`` keeps the last N exchanges on ``proxy.journal`` (by default
    ``admin.journal_size``: none); ``journal_body_bytes`` the first N bytes of each request
    body in them (by default ``admin.journal_body_bytes``: none).
    """
    settings, hooks = _with_hook(settings or Settings(), hooks, hook)
    listener = open_listener(*listen)
    lines: list[dict[str, str]] = []
    sink = access_log or (_capture(settings, lines) if capture_access_log else _discard)
    server = ProxyServer(
        settings,
        upstream,
        sink,
        hooks=hooks,
        journal_size=journal_size,
        journal_body_bytes=journal_body_bytes,
    )
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
    journal_size: int | None = None,
    journal_body_bytes: int | None = None,
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
                journal_size=journal_size,
                journal_body_bytes=journal_body_bytes,
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


def _runtime_fault(
    fault: Fault | None, match: Mapping[str, Any] | None, keys: dict[str, Any]
) -> tuple[Fault, Match, dict[str, Any]]:
    """What ``proxy.fault`` was given, checked as ``POST /faults`` checks its JSON."""
    if fault is not None and keys:
        raise TypeError("proxy.fault takes a Fault or a fault's keys, not both")
    # A Fault made in code has its match checked alone (any kind stands in for it).
    raw = {**(keys if fault is None else {"kind": "hang"}), "match": dict(match or {})}
    problems: list[str] = []
    parsed = parse_runtime_fault(raw, lambda key, message: problems.append(f"{key}: {message}"))
    if fault is not None:
        problems += [f"fault.{key}: {message}" for key, message in fault.problems()]
    if parsed is None or problems:
        raise ValueError("; ".join(problems))
    return (parsed[0] if fault is None else fault), parsed[1], parsed[2]


def _capture(settings: Settings, lines: list[dict[str, str]]) -> AccessLogSink:
    render = make_formatter("json", settings.access_log.fields)

    def sink(record: AccessRecord) -> None:
        lines.append(json.loads(render(record)))

    return sink


def _discard(record: AccessRecord) -> None:
    pass
