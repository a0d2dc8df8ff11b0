"""Forwarding one request: upstream connection from the pool, head, body, response, back.

The request body (if any) is uploaded by a second task while this one relays the response,
so an origin that answers early (413, 417, a final status instead of 100 Continue) is heard
at once. A body-less request, the common case, costs no extra task.
"""

from __future__ import annotations

import logging
import math
import socket

import trio

from ._accesslog import AccessRecord
from ._context import ProxyContext
from ._diagnostics import request_fields
from ._errors import ClientError, ClientGone, UpstreamClosed, UpstreamError
from ._h11 import h11
from ._headers import (
    BodyKind,
    RequestPlan,
    header_value,
    reason_phrase,
    response_headers,
    trailer_headers,
)
from ._peer import Downstream, UpstreamConnection
from ._strict import ChunkedChecker, FramingError, check_response_head, find_head_end
from ._tunnel import splice

log = logging.getLogger("trioproxy")

# A response head slower than this starts a watch on the client's socket.
_WATCH_CLIENT_AFTER_S = 1.0


async def forward(
    down: Downstream,
    request: h11.Request,
    plan: RequestPlan,
    record: AccessRecord,
    ctx: ProxyContext,
) -> None:
    """Forward one request, retrying once on a fresh connection when a reused one was stale.

    The retry follows nginx and Varnish: only for an idempotent request without a body,
    only when the reused connection died before any response byte arrived.
    """
    pool = ctx.pool
    if plan.body is BodyKind.NONE:
        # Take the request's end now, so a failure before any upstream I/O still leaves the
        # downstream connection in step for its next request.
        expect_end_of_request(down)
    else:
        await _read_body_ahead(down, plan, ctx)
    up, reused = await pool.acquire()
    while True:
        record.upstream_addr = up.address
        started = trio.current_time()
        try:
            await _exchange_once(down, up, request, plan, record, ctx)
        except UpstreamClosed as exc:
            pool.discard(up)
            if not (reused and plan.idempotent and plan.body is BodyKind.NONE):
                raise
            log.info("retrying on a fresh connection: %s", exc, extra=request_fields(record))
            ctx.stats.retries += 1
            up, reused = await pool.connect_fresh(), False
            continue
        except BaseException:
            pool.discard(up)
            raise
        finally:
            record.upstream_duration_s = trio.current_time() - started
        # The upstream is done with: back to the pool before the client's last bytes go out.
        pool.release(up)
        await down.flush(ctx.settings.timeouts.client_send_s)
        return


async def _exchange_once(
    down: Downstream,
    up: UpstreamConnection,
    request: h11.Request,
    plan: RequestPlan,
    record: AccessRecord,
    ctx: ProxyContext,
) -> None:
    timeouts = ctx.settings.timeouts
    # _parsed=True: h11 skips re-validating what its own parser already validated (and the
    # few fields we add are valid by construction): a third of the per-request parse cost.
    up.queue(
        h11.Request(method=request.method, target=plan.target, headers=plan.headers, _parsed=True)
    )
    if plan.body is BodyKind.NONE:
        up.queue(h11.EndOfMessage())
        await up.flush(timeouts.upstream_send_s)
        await _relay_response(down, up, request, plan, record, ctx)
        return

    upload_failure: list[BaseException] = []
    relay_failure: list[BaseException] = []
    async with trio.open_nursery() as nursery:

        async def upload() -> None:
            try:
                await _upload_body(down, up, plan, ctx)
            except UpstreamError:
                # The origin stopped reading: it may have answered early and closed. The
                # relay below reports that answer, or the failure if there is none.
                pass
            except (ClientError, ClientGone) as exc:
                upload_failure.append(exc)
                nursery.cancel_scope.cancel()

        nursery.start_soon(upload)
        try:
            await _relay_response(down, up, request, plan, record, ctx)
        except Exception as exc:
            relay_failure.append(exc)
        # A complete response ends the exchange; an unfinished upload is abandoned (the
        # connections' h11 states then forbid reusing either of them).
        nursery.cancel_scope.cancel()
    if upload_failure:
        raise upload_failure[0]
    if relay_failure:
        raise relay_failure[0]


# A request body is read ahead up to this much before its head goes upstream (HAProxy's
# `option http-buffer-request`: one buffer). A body complete by then goes out whole, so the
# origin never sees a request the client did not finish (conformance: FWD_INVALID, the
# "incomplete request" class); a larger one streams on from there, in bounded memory.
BODY_READ_AHEAD_BYTES = 65536


async def _read_body_ahead(down: Downstream, plan: RequestPlan, ctx: ProxyContext) -> None:
    """Receive until the request body is complete or BODY_READ_AHEAD_BYTES are buffered in
    h11's receive buffer (which _upload_body then drains as before)."""
    if down.h11.they_are_waiting_for_100_continue:
        return  # the client sends the body only after the origin's 100 Continue
    chunks = ChunkedChecker() if plan.body is BodyKind.CHUNKED else None
    length = int(header_value(plan.headers, b"content-length") or 0)
    checked = 0
    while True:
        buffered = down.h11.trailing_data[0]
        if chunks is not None:
            try:
                chunks.feed(buffered[checked:])
            except FramingError as exc:
                raise ClientError(f"malformed chunked body: {exc}", status=exc.status) from exc
            checked = len(buffered)
            if chunks.done:
                return
        elif len(buffered) >= length:
            return
        if len(buffered) >= BODY_READ_AHEAD_BYTES:
            return
        if not await down.receive(ctx.settings.timeouts.client_body_s):
            return  # EOF mid-body: _upload_body reports it as before


def expect_end_of_request(down: Downstream) -> None:
    event = down.h11.next_event()
    if not isinstance(event, h11.EndOfMessage):  # a body-less request ends at once
        raise ClientError(f"unexpected {type(event).__name__} after a request without body")


async def _upload_body(
    down: Downstream, up: UpstreamConnection, plan: RequestPlan, ctx: ProxyContext
) -> None:
    timeouts = ctx.settings.timeouts
    chunks = ChunkedChecker() if plan.body is BodyKind.CHUNKED else None
    received = down.h11.trailing_data[0] if chunks is not None else b""
    while True:
        try:
            if chunks is not None and received:
                chunks.feed(received)
                received = b""
            event = down.h11.next_event()
        except FramingError as exc:
            raise ClientError(f"malformed chunked body: {exc}", status=exc.status) from exc
        except h11.RemoteProtocolError as exc:
            if down.h11.trailing_data[1]:  # EOF mid-body: the client gave up
                raise ClientGone("client closed the connection mid-body") from exc
            raise ClientError(f"invalid request body: {exc}") from exc
        if event is h11.NEED_DATA:
            await up.flush(timeouts.upstream_send_s)  # backpressure: never read ahead
            received = await down.receive(timeouts.client_body_s)
        elif isinstance(event, h11.Data):
            up.queue(h11.Data(data=event.data))
        elif isinstance(event, h11.EndOfMessage):
            up.queue(h11.EndOfMessage(headers=trailer_headers(event.headers.raw_items())))
            await up.flush(timeouts.upstream_send_s)
            return
        else:
            raise ClientError(f"unexpected {type(event).__name__} in request body")


async def _read_response_head(
    down: Downstream,
    up: UpstreamConnection,
    request: h11.Request,
    ctx: ProxyContext,
    *,
    watch_client: bool,
) -> tuple[h11.Response | h11.InformationalResponse, bytearray]:
    """Wait for the final response head (or the 101 of an upgrade), relaying other 1xx
    responses on the way (RFC 9110 15.2).

    Returns it with the bytes received past it (the start of the body), which the strict
    chunked check still has to see.
    """
    deadline = trio.current_time() + ctx.settings.timeouts.upstream_response_s
    limit = ctx.settings.limits.max_header_bytes
    buffer = bytearray()
    searched = 0
    while True:
        try:
            end = find_head_end(buffer, searched)
            if end >= 0:
                check_response_head(buffer[:end])
        except FramingError as exc:
            raise UpstreamError(f"malformed response from upstream {up.address}: {exc}") from exc
        if end < 0:
            if len(buffer) > limit:
                raise UpstreamError(f"response head from upstream {up.address} too large")
            searched = len(buffer)
            if watch_client:  # nobody else reads the client's socket meanwhile
                data = await _receive_watching_client(down, up, deadline)
            else:
                data = await up.receive(deadline - trio.current_time())
            if not data:  # EOF: before any byte, the stale keep-alive race; else a cut head
                if up.bytes_received == 0:
                    raise UpstreamClosed(f"upstream {up.address} closed the connection")
                raise UpstreamError(f"upstream {up.address} closed mid-response-head")
            buffer += data
            continue
        del buffer[:end]
        searched = 0
        event = _next_upstream_event(up)
        if isinstance(event, h11.Response):
            return event, buffer
        if not isinstance(event, h11.InformationalResponse):
            raise UpstreamError(f"unexpected {type(event).__name__} from upstream {up.address}")
        if event.status_code == 101:  # h11 lets it through only if we proposed an upgrade
            return event, buffer
        if request.http_version != b"1.0":  # HTTP/1.0 clients get no 1xx (RFC 9110 15.2)
            headers = response_headers(
                event.headers.raw_items(), event.http_version, rules=ctx.forwarding
            )
            down.queue(h11.InformationalResponse(status_code=event.status_code, headers=headers))
            await down.flush(ctx.settings.timeouts.client_send_s)


async def _receive_watching_client(
    down: Downstream, up: UpstreamConnection, deadline: float
) -> bytes:
    """Wait for the upstream's next bytes; if that takes a while, watch the client too.

    A body-less request leaves nobody reading the client's socket while the upstream
    thinks, so a client that gave up would go unnoticed until the answer came (or never,
    for a long poll). Most answers come quickly and cost no watcher; after
    ``_WATCH_CLIENT_AFTER_S`` one task waits for the client's EOF or reset, which abandons
    the exchange (and the upstream connection with it).
    """
    now = trio.current_time()
    if deadline - now <= _WATCH_CLIENT_AFTER_S:
        return await up.receive(deadline - now)
    with trio.move_on_after(_WATCH_CLIENT_AFTER_S):
        return await up.receive(math.inf)
    outcome: list[bytes | BaseException] = []
    async with trio.open_nursery() as nursery:

        async def watch_client() -> None:
            if await _client_left(down):
                nursery.cancel_scope.cancel()

        nursery.start_soon(watch_client)
        try:
            outcome.append(await up.receive(deadline - trio.current_time()))
        except Exception as exc:
            outcome.append(exc)
        nursery.cancel_scope.cancel()
    if not outcome:
        raise ClientGone("client closed the connection while the upstream was answering")
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


async def _client_left(down: Downstream) -> bool:
    """Wait until the client's socket is readable; True if that is its EOF or a reset
    (bytes of a pipelined request tell nothing: then stop watching)."""
    sock = down.stream.socket
    await trio.lowlevel.wait_readable(sock)
    try:
        return not await sock.recv(1, socket.MSG_PEEK)
    except OSError:
        return True


async def _relay_response(
    down: Downstream,
    up: UpstreamConnection,
    request: h11.Request,
    plan: RequestPlan,
    record: AccessRecord,
    ctx: ProxyContext,
) -> None:
    timeouts = ctx.settings.timeouts
    response, body_start = await _read_response_head(
        down, up, request, ctx, watch_client=plan.body is BodyKind.NONE
    )
    # From here on the client has (queued) bytes: an upstream failure can only abort it.
    raw = response.headers.raw_items()
    if isinstance(response, h11.InformationalResponse):  # 101: the upgrade was accepted
        await _tunnel(down, up, response, record, ctx)
        return
    headers = response_headers(
        raw, response.http_version, rules=ctx.forwarding, request_id=record.request_id
    )
    if plan.edit_response is not None:  # response-header rules
        headers = plan.edit_response(response.status_code, headers)
    if ctx.draining or down.h11.their_state is h11.SEND_BODY:
        # Draining, or answering before the request body was read (an early 413, 401, or a
        # refused 100-continue): this connection closes after the response; say so.
        headers.append((b"Connection", b"close"))
    record.upstream_status = response.status_code
    record.content_type = header_value(raw, b"content-type")
    record.section_io_tag = header_value(raw, b"section-io-tag")
    down.queue(
        h11.Response(
            status_code=response.status_code,
            headers=headers,
            reason=reason_phrase(response.status_code, response.reason),
            _parsed=True,
        )
    )
    record.body_start = down.bytes_sent + down.queued_bytes
    record.status = response.status_code
    # Trailers survive only where the downstream framing is chunked too.
    keep_trailers = request.http_version != b"1.0" and not header_value(headers, b"content-length")
    chunks = ChunkedChecker() if header_value(raw, b"transfer-encoding") else None
    received: bytes | bytearray = body_start
    while True:
        if chunks is not None and received:
            _check_upstream_chunks(chunks, received, up)
        event = _next_upstream_event(up)
        if event is h11.NEED_DATA:
            await down.flush(timeouts.client_send_s)
            received = await up.receive(timeouts.upstream_read_s)
            continue
        received = b""
        if isinstance(event, h11.Data):
            down.queue(h11.Data(data=event.data))
            record.body_bytes_sent += len(event.data)
        elif isinstance(event, h11.EndOfMessage):
            trailers = trailer_headers(event.headers.raw_items(), raw) if keep_trailers else []
            down.queue(h11.EndOfMessage(headers=trailers))
            return  # the caller flushes, after returning the connection to the pool
        else:
            raise UpstreamError(f"unexpected {type(event).__name__} from upstream {up.address}")


async def _tunnel(
    down: Downstream,
    up: UpstreamConnection,
    switch: h11.InformationalResponse,
    record: AccessRecord,
    ctx: ProxyContext,
) -> None:
    """Relay the 101 and splice the two connections; neither is reused afterwards (h11
    leaves both in SWITCHED_PROTOCOL, which the pool and the keep-alive loop refuse)."""
    headers = response_headers(
        switch.headers.raw_items(),
        switch.http_version,
        rules=ctx.forwarding,
        request_id=record.request_id,
        switching=True,
    )
    down.queue(h11.InformationalResponse(status_code=101, headers=headers, reason=switch.reason))
    record.status = record.upstream_status = 101
    ctx.pool.detach(up)
    await down.flush(ctx.settings.timeouts.client_send_s)
    ctx.stats.tunnels_open += 1
    try:
        await splice(
            down,
            up,
            idle_timeout_s=ctx.settings.timeouts.tunnel_idle_s,
            fin_timeout_s=ctx.settings.timeouts.tunnel_fin_s,
        )
    finally:
        ctx.stats.tunnels_open -= 1


def _check_upstream_chunks(
    chunks: ChunkedChecker, data: bytes | bytearray, up: UpstreamConnection
) -> None:
    try:
        chunks.feed(data)
    except FramingError as exc:
        raise UpstreamError(f"malformed chunked body from upstream {up.address}: {exc}") from exc


def _next_upstream_event(up: UpstreamConnection) -> object:
    try:
        return up.h11.next_event()
    except h11.RemoteProtocolError as exc:
        if up.bytes_received == 0:  # EOF before any byte: the stale keep-alive race
            raise UpstreamClosed(f"upstream {up.address} closed the connection") from exc
        raise UpstreamError(f"invalid response from upstream {up.address}: {exc}") from exc
