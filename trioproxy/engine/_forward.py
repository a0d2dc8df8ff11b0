"""Forwarding one request over a pooled upstream connection, retried once when it was stale.

In order: body buffered, upstream connection from the pool, head, body, response read ahead,
connection back to the pool, the rest to the client.

Upstream connections are held only while bytes flow: a request body that fits
``limits.request_buffer_bytes`` is read whole before a connection is taken, and a response
that fits ``limits.response_buffer_bytes`` is read whole and its connection released before
the client has to take it. Larger ones stream, under rate floors.

A streamed request body is uploaded by a side task while this one relays the response, so an
origin that answers early (413, 417, a final status instead of 100 Continue) is heard at
once. The body walks h11's events in bounded slices and writes consecutive data as one
event: a body of a million one-byte chunks must not hold the event loop.

The parts: `_requestbody` (buffering, upload), `_response` (head, body, the tunnel hand-off),
`_slices` (the bounded slices both walk); the state they share is the `Exchange`.
"""

from __future__ import annotations

import logging
from functools import partial

import trio

from ..core._errors import ClientGone, UpstreamClosed
from ..core._headers import BodyKind
from ._diagnostics import request_fields
from ._exchange import Exchange
from ._h11 import h11
from ._race import with_side_task
from ._requestbody import buffer_request_body, upload_body
from ._response import relay_response

log = logging.getLogger("trioproxy")


async def forward(ex: Exchange) -> None:
    """Forward one request, retrying once on a fresh connection when a reused one was stale.

    The retry follows nginx and Varnish: only for an idempotent request without a body,
    only when the reused connection died before any response byte arrived.
    """
    try:
        await _forward(ex)
    finally:  # the rate floors are this request's only, however it ends
        ex.down.send_floor = ex.down.receive_floor = None


async def _forward(ex: Exchange) -> None:
    pool, plan, record = ex.ctx.pool, ex.plan, ex.record
    ex.body = await buffer_request_body(ex)
    up, reused, waited = await pool.acquire()
    # Left while we waited? Then the origin never hears of it. (No checkpoint between the
    # acquire and the loop below: a cancellation cannot leak the connection.)
    if waited and ex.down.peer_closed():
        pool.give_back(up)
        raise ClientGone("client closed the connection while waiting for an upstream connection")
    while True:
        ex.up = up
        record.upstream_addr = up.address
        started = trio.current_time()
        try:
            await _exchange_once(ex)
        except UpstreamClosed as exc:
            pool.discard(up)
            if not (reused and plan.idempotent and plan.body is BodyKind.NONE):
                raise
            log.info("retrying on a fresh connection: %s", exc, extra=request_fields(record))
            ex.ctx.stats.retries += 1
            up, reused = await pool.connect_fresh()
            continue
        except BaseException:
            pool.discard(up)
            raise
        finally:
            ex.up = None
            record.upstream_duration_s = trio.current_time() - started
        # The upstream is done with: back to the pool before the client's last bytes go out.
        pool.release(up)
        await ex.flush_to_client()
        return


async def _exchange_once(ex: Exchange) -> None:
    up, plan = ex.upstream, ex.plan
    # _parsed=True: h11 skips re-validating what its own parser already validated (and the
    # few fields we add are valid by construction): a third of the per-request parse cost.
    up.queue(
        h11.Request(
            method=ex.request.method, target=plan.target, headers=plan.headers, _parsed=True
        )
    )
    if ex.body is None:
        up.queue(h11.EndOfMessage())
        await up.flush(ex.timeouts.upstream_send_s)
        await relay_response(ex)
        return
    # A complete response ends the exchange; an unfinished upload is then abandoned (the
    # connections' h11 states forbid reusing either of them).
    await with_side_task(partial(relay_response, ex), partial(upload_body, ex))
