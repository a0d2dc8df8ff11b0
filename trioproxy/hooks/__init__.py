"""trioproxy hooks: program the proxy in Python, safely.

A rule in ``trioproxy.toml`` names a hook in a file of the configuration directory::

    [[rules]]
    match.path_prefix = "/admin"
    hook = { file = "hooks/auth.py", name = "check", timeout_s = 0.2, on_error = 503 }

and ``hooks/auth.py`` defines it::

    from trioproxy.hooks import Exchange

    async def check(exchange: Exchange) -> None:
        if exchange.request.header("authorization") != "Bearer let-me-in":
            exchange.respond(401, "token required\\n", {"WWW-Authenticate": "Bearer"})

A hook is an ``async def`` taking the exchange (the request hook point), or a class whose
instance has any of the hook points below, each an ``async def``:

``request(exchange)``
    After the strict checks and the TOML rules. ``exchange.request`` is an immutable
    `Request`; the hook may answer (`Exchange.respond`), rewrite the target, and edit request
    and response headers.
``response(exchange, response)``
    With the origin's response head (`ResponseHead`): edit response headers, or replace the
    response with ``exchange.respond(...)``.
``access(exchange, status)``
    Before the access line is written: add fields with ``exchange.log(name, value)``.
``lifespan(nursery)``
    Once, when the configuration is loaded: start background tasks in ``nursery``; they are
    cancelled when the proxy stops or a reload replaces the hook.
``request_body(exchange, chunk, end)`` / ``response_body(exchange, chunk, end)``
    Streaming transformers: called with each slice of the body as it passes (backpressure
    kept: nothing more is read until the hook returns), then with ``b""`` and ``end=True``;
    what they return is forwarded instead, re-framed by the proxy. `whole_body` gives a
    whole-body view up to a declared size.

Every call runs under the rule's ``timeout_s``; an exception or a timeout applies
``on_error`` ("pass": the request goes on as if the hook had done nothing; 502 or 503: that
answer) and writes one diagnostics line naming the hook and the request ID. A step of hook
code that blocks the event loop (``time.sleep``, a blocking client) is named on stderr while it
blocks, and counted: do blocking work with `run_blocking`.

Embedding: ``trioproxy.serve(..., hooks={"check": check})`` with ``hook = { name = "check" }``
rules, or ``trioproxy.serve(..., hook=check)`` to run one hook on every request.
"""

from __future__ import annotations

from typing import Any, Protocol

from ._api import Exchange, HookError, Request, ResponseHead
from ._blocking import BLOCKING_THREADS, run_blocking
from ._examples import Example
from ._wholebody import whole_body

__all__ = [
    "BLOCKING_THREADS",
    "AccessHook",
    "Example",
    "Exchange",
    "HookError",
    "LifespanHook",
    "Request",
    "RequestBodyHook",
    "RequestHook",
    "ResponseBodyHook",
    "ResponseHead",
    "ResponseHook",
    "run_blocking",
    "whole_body",
]


class RequestHook(Protocol):
    async def request(self, exchange: Exchange) -> None: ...


class ResponseHook(Protocol):
    async def response(self, exchange: Exchange, response: ResponseHead) -> None: ...


class AccessHook(Protocol):
    async def access(self, exchange: Exchange, status: int) -> None: ...


class LifespanHook(Protocol):
    async def lifespan(self, nursery: Any) -> None: ...  # a trio.Nursery


class RequestBodyHook(Protocol):
    async def request_body(self, exchange: Exchange, chunk: bytes, end: bool) -> bytes: ...


class ResponseBodyHook(Protocol):
    async def response_body(self, exchange: Exchange, chunk: bytes, end: bool) -> bytes: ...
