"""Examples a hook file carries, run by ``trioproxy validate`` through the real proxy.

A hook file may define ``EXAMPLES``, a list of `Example`: a request and what should come of
it. The validator's child process (`_child`) runs each through the whole configuration (every
rule, every hook) on the in-memory network, with an origin that answers ``origin_status``
and records what it received, on a virtual clock: the site's configuration gets unit tests
that run at git push. A failed example is one ``file:line: ...`` line (the line of its
``Example(...)``).
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Example", "run_examples"]

# Where the example's origin sits on the memory network, and what the proxy calls it.
_ORIGIN = ("192.0.2.80", 80)
_PROXY = ("192.0.2.1", 80)
_NOT_GIVEN: Any = object()


@dataclass(frozen=True)
class Example:
    """One request through the configuration, and what must come of it.

    ``request`` is "METHOD /target". Expectations left out are not checked; in
    ``expect_headers`` and ``expect_upstream_headers`` a value of None means "absent".
    ``expect_upstream`` is the target the origin must receive, or None: the origin must not
    be asked at all. ``expect_log`` holds access-log fields hooks add."""

    request: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str = ""
    client: str = "203.0.113.10"
    origin_status: int = 200
    expect_status: int | None = None
    expect_headers: Mapping[str, str | None] = field(default_factory=dict)
    expect_upstream: str | None = _NOT_GIVEN
    expect_upstream_headers: Mapping[str, str | None] = field(default_factory=dict)
    expect_log: Mapping[str, str] = field(default_factory=dict)
    line: int = field(default=0, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.line:  # where the hook file wrote it: the first frame outside this file
            frame = sys._getframe(1)
            while frame.f_back is not None and frame.f_code.co_filename in (__file__, "<string>"):
                frame = frame.f_back
            object.__setattr__(self, "line", frame.f_lineno)


@dataclass
class _Seen:
    target: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    asked: bool = False


def run_examples(settings: Any, examples: list[tuple[str, Example]]) -> list[str]:
    """Problems (``file:line: ...``) of the examples, each run on a fresh proxy."""
    import trio
    import trio.testing

    problems: list[str] = []
    for file, example in examples:
        clock = trio.testing.MockClock(autojump_threshold=0)
        try:
            found = trio.run(_run_one, settings, example, clock=clock)
        except Exception as exc:
            found = [f"could not run: {exc!r}"]
        number = f"{file}:{example.line}: example {example.request!r}"
        problems += [f"{number}: {problem}" for problem in found]
    return problems


async def _run_one(settings: Any, example: Example) -> list[str]:
    import trio

    from ..core._accesslog import AccessRecord
    from ..engine._memory import MemoryNetwork
    from ..engine._resolver import SockAddr
    from ..engine._server import ProxyServer

    network = MemoryNetwork()
    records: list[AccessRecord] = []
    logged = trio.Event()
    seen = _Seen()

    async def lookup(host: str, port: int) -> list[SockAddr]:
        await trio.lowlevel.checkpoint()
        return [(socket.AF_INET, _ORIGIN)]

    def log(record: AccessRecord) -> None:
        records.append(record)
        logged.set()

    server = ProxyServer(settings, ("origin", 80), log, lookup=lookup, connect=network.connect)
    origin = network.listen(_ORIGIN)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_origin, origin, example, seen)
        await nursery.start(server.run, [network.listen(_PROXY)])
        with trio.fail_after(120):
            status, headers = await _client(network.open(_PROXY, example.client), example)
            await logged.wait()
        nursery.cancel_scope.cancel()
    return _compare(example, status, headers, seen, records[0].extra)


async def _origin(listener: Any, example: Example, seen: _Seen) -> None:
    import h11

    transport = await listener.accept()
    conn = h11.Connection(h11.SERVER)
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await _read(transport))
        elif isinstance(event, h11.Request):
            seen.asked, seen.target = True, event.target.decode("latin-1")
            seen.headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                            for k, v in event.headers.raw_items()}  # fmt: skip
        elif isinstance(event, h11.EndOfMessage):
            body = b"origin\n"
            fields = [(b"Content-Type", b"text/plain"), (b"Content-Length", b"%d" % len(body))]
            out = conn.send(h11.Response(status_code=example.origin_status, headers=fields))
            out += conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
            await _write(transport, out)
            return
        else:
            return


async def _client(transport: Any, example: Example) -> tuple[int, dict[str, str]]:
    import h11

    method, _, target = example.request.partition(" ")
    body = example.body.encode("utf-8")
    fields = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in example.headers.items()]
    if not any(k.lower() == b"host" for k, _ in fields):
        fields.insert(0, (b"Host", b"example.com"))
    if body:
        fields.append((b"Content-Length", b"%d" % len(body)))
    conn = h11.Connection(h11.CLIENT)
    out = conn.send(h11.Request(method=method, target=target or "/", headers=fields))
    out += (conn.send(h11.Data(data=body)) if body else b"") + conn.send(h11.EndOfMessage())
    await _write(transport, out)
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await _read(transport))
        elif isinstance(event, h11.Response):
            return event.status_code, {k.decode("latin-1").lower(): v.decode("latin-1")
                                       for k, v in event.headers.raw_items()}  # fmt: skip


async def _read(transport: Any) -> bytes:
    while (data := transport.read_nowait(65536)) is None:
        await transport.wait_readable()
    return bytes(data)


async def _write(transport: Any, data: bytes) -> None:
    view = memoryview(data)
    while view:
        taken = transport.write_nowait(view)
        if taken is None:
            await transport.wait_writable()
        else:
            view = view[taken:]


def _compare(
    example: Example,
    status: int,
    headers: dict[str, str],
    seen: _Seen,
    logged: tuple[tuple[str, str], ...],
) -> list[str]:
    found = []
    if example.expect_status is not None and status != example.expect_status:
        found.append(f"expected status {example.expect_status}, got {status}")
    found += _fields("response header", example.expect_headers, headers)
    if example.expect_upstream is None and seen.asked:
        found.append(f"expected the origin not to be asked; it got {seen.target!r}")
    elif example.expect_upstream not in (None, _NOT_GIVEN):
        if not seen.asked:
            found.append(f"expected the origin to get {example.expect_upstream!r}; not asked")
        elif seen.target != example.expect_upstream:
            found.append(f"expected the origin to get {example.expect_upstream!r}, got "
                         f"{seen.target!r}")  # fmt: skip
    if example.expect_upstream_headers:
        found += _fields("upstream header", example.expect_upstream_headers, seen.headers)
    found += _fields("log field", example.expect_log, dict(logged), lower=False)
    return found


def _fields(
    what: str, expected: Mapping[str, str | None], got: dict[str, str], *, lower: bool = True
) -> list[str]:
    found = []
    for name, value in expected.items():
        actual = got.get(name.lower() if lower else name)
        if actual != value:
            shown = "absent" if actual is None else repr(actual)
            wanted = "absent" if value is None else repr(value)
            found.append(f"expected {what} {name} {wanted}, got {shown}")
    return found
