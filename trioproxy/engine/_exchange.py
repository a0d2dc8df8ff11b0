"""Forwarding one request: body buffered, upstream connection from the pool, head, body,
response read ahead, connection back to the pool, the rest to the client.

Upstream connections are held only while bytes flow: a request body that fits
``limits.request_buffer_bytes`` is read whole before a connection is taken, and a response
that fits ``limits.response_buffer_bytes`` is read whole and its connection released before
the client has to take it. Larger ones stream, under rate floors.

A streamed request body is uploaded by a side task while this one relays the response, so an
origin that answers early (413, 417, a final status instead of 100 Continue) is heard at
once. The body walks h11's events in bounded slices and writes consecutive data as one
event: a body of a million one-byte chunks must not hold the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import trio

from ..core._accesslog import AccessRecord
from ..core._chunked import ChunkedChecker
from ..core._errors import ClientError, ClientGone, UpstreamClosed, UpstreamError, UpstreamTimeout
from ..core._headers import (
    BodyKind,
    RequestPlan,
    header_value,
    reason_phrase,
    response_headers,
    trailer_headers,
)
from ..core._strict import FramingError, check_response_head, find_head_end
from ._context import ProxyContext
from ._diagnostics import request_fields
from ._h11 import h11
from ._peer import Downstream, Peer, RateFloor, UpstreamConnection
from ._race import with_side_task
from ._tunnel import splice

log = logging.getLogger("trioproxy")

# A response head slower than this starts a watch on the client's socket.
_WATCH_CLIENT_AFTER_S = 1.0
# h11 events (or chunk-size lines) handled before the task yields: a received buffer can
# hold ten thousand one-byte chunks, and other connections must not wait for all of them.
_EVENTS_PER_SLICE = 64
# Informational responses relayed for one request: far more than any origin sends (a 100
# and a few 103s); an origin sending them without end gets a 502 instead of a busy loop.
_MAX_INFORMATIONAL = 32


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
    try:
        await _forward(down, request, plan, record, ctx)
    finally:  # the rate floors are this request's only, however it ends
        down.send_floor = down.receive_floor = None


async def _forward(
    down: Downstream,
    request: h11.Request,
    plan: RequestPlan,
    record: AccessRecord,
    ctx: ProxyContext,
) -> None:
    pool = ctx.pool
    body = await _buffer_request_body(down, plan, ctx)
    up, reused, waited = await pool.acquire()
    # Left while we waited? Then the origin never hears of it. (No checkpoint between the
    # acquire and the loop below: a cancellation cannot leak the connection.)
    if waited and down.peer_closed():
        pool.give_back(up)
        raise ClientGone("client closed the connection while waiting for an upstream connection")
    while True:
        record.upstream_addr = up.address
        started = trio.current_time()
        try:
            await _exchange_once(down, up, request, plan, record, ctx, body)
        except UpstreamClosed as exc:
            pool.discard(up)
            if not (reused and plan.idempotent and plan.body is BodyKind.NONE):
                raise
            log.info("retrying on a fresh connection: %s", exc, extra=request_fields(record))
            ctx.stats.retries += 1
            up, reused = await pool.connect_fresh()
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
    body: RequestBody | None,
) -> None:
    # _parsed=True: h11 skips re-validating what its own parser already validated (and the
    # few fields we add are valid by construction): a third of the per-request parse cost.
    up.queue(
        h11.Request(method=request.method, target=plan.target, headers=plan.headers, _parsed=True)
    )
    relay = partial(_relay_response, down, up, request, plan, record, ctx)
    if body is None:
        up.queue(h11.EndOfMessage())
        await up.flush(ctx.settings.timeouts.upstream_send_s)
        await relay()
        return
    # A complete response ends the exchange; an unfinished upload is then abandoned (the
    # connections' h11 states forbid reusing either of them).
    await with_side_task(relay, partial(_upload_body, down, up, ctx, body))


# --- The request body -----------------------------------------------------------------------


@dataclass(slots=True)
class RequestBody:
    """A request body on its way: its framing checker and its one total deadline."""

    chunks: ChunkedChecker | None
    deadline: float


async def _buffer_request_body(
    down: Downstream, plan: RequestPlan, ctx: ProxyContext
) -> RequestBody | None:
    """Read the request body until it is complete or ``request_buffer_bytes`` are held in
    h11's receive buffer, before any upstream connection is taken. Also the origin never
    sees a request its client did not finish (conformance: the incomplete-request class).

    From here to the body's end one total deadline and the rate floor apply (cleared by
    forward()). The chunked-framing checker returned has seen every byte h11 holds.
    """
    if plan.body is BodyKind.NONE:
        # Take the request's end now, so a failure before any upstream I/O still leaves the
        # downstream connection in step for its next request.
        expect_end_of_request(down)
        return None
    timeouts, limits = ctx.settings.timeouts, ctx.settings.limits
    now = trio.current_time()
    body = RequestBody(
        ChunkedChecker() if plan.body is BodyKind.CHUNKED else None,
        now + timeouts.client_body_total_s,
    )
    if limits.min_body_rate_bytes_per_s:
        down.receive_floor = RateFloor(
            limits.min_body_rate_bytes_per_s, timeouts.client_body_s, now, down.bytes_received
        )
    length = int(header_value(plan.headers, b"content-length") or 0)
    held = down.h11.trailing_data[0]
    if body.chunks is not None:
        await _check_chunks(body.chunks, held, _client_framing_error)
    buffered = len(held)
    if down.h11.they_are_waiting_for_100_continue:
        if length > limits.request_buffer_bytes:
            return body  # the origin decides: it may refuse a body this large early
        # nginx's way (RFC 9110 10.1.1 lets a proxy answer for the origin): answer the
        # expectation ourselves and take the body, so no upstream connection waits for a
        # client that may never send it. A chunked body is taken up to the buffer too.
        down.queue(h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue"))
        await down.flush(timeouts.client_send_s)
        plan.headers = [(k, v) for k, v in plan.headers if k.lower() != b"expect"]
    while buffered < limits.request_buffer_bytes and not _complete(body, buffered, length):
        data = await down.recv(_body_wait_s(body, timeouts.client_body_s))
        down.h11.receive_data(data)  # recorded before any checkpoint: nothing read is lost
        if not data:
            raise ClientGone("client closed the connection mid-body")
        if body.chunks is not None:
            await _check_chunks(body.chunks, data, _client_framing_error)
        buffered += len(data)
    return body


def _complete(body: RequestBody, buffered: int, length: int) -> bool:
    return body.chunks.done if body.chunks is not None else buffered >= length


def _body_wait_s(body: RequestBody, inactivity_s: float) -> float:
    left_s = body.deadline - trio.current_time()
    if left_s <= 0:
        raise ClientError("request body took too long", status=408)
    return min(inactivity_s, left_s)


def expect_end_of_request(down: Downstream) -> None:
    event = down.h11.next_event()
    if not isinstance(event, h11.EndOfMessage):  # a body-less request ends at once
        raise ClientError(f"unexpected {type(event).__name__} after a request without body")


async def _upload_body(
    down: Downstream, up: UpstreamConnection, ctx: ProxyContext, body: RequestBody
) -> None:
    """Send the body upstream: what is buffered, then the rest as it arrives (a body larger
    than the buffer, under the rate floor and the total deadline)."""
    timeouts = ctx.settings.timeouts
    try:
        while True:
            try:
                event, _ = _move_data(down, up)
            except h11.RemoteProtocolError as exc:
                if down.h11.trailing_data[1]:  # EOF mid-body: the client gave up
                    raise ClientGone("client closed the connection mid-body") from exc
                raise ClientError(f"invalid request body: {exc}") from exc
            if event is None:
                await trio.lowlevel.checkpoint()  # a slice done: let others run
            elif event is h11.NEED_DATA:
                await up.flush(timeouts.upstream_send_s)  # backpressure: never read ahead
                data = await down.recv(_body_wait_s(body, timeouts.client_body_s))
                down.h11.receive_data(data)  # recorded before any checkpoint
                if body.chunks is not None:
                    await _check_chunks(body.chunks, data, _client_framing_error)
            elif isinstance(event, h11.EndOfMessage):
                up.queue(h11.EndOfMessage(headers=trailer_headers(event.headers.raw_items())))
                await up.flush(timeouts.upstream_send_s)
                return
            else:
                raise ClientError(f"unexpected {type(event).__name__} in request body")
    except UpstreamError:
        # The origin stopped reading: it may have answered early and closed. The relay
        # reports that answer, or the failure if there is none.
        return


def _move_data(source: Peer, sink: Peer) -> tuple[object, int]:
    """Move up to a slice of consecutive Data events from ``source`` to ``sink`` as one event.

    Returns the first other event (NEED_DATA, EndOfMessage, ...), which the caller handles,
    or None when the slice ended first; and how many body bytes moved.
    """
    parts: list[bytes] = []
    event: object = None
    try:
        for _ in range(_EVENTS_PER_SLICE):
            event = source.h11.next_event()
            if type(event) is not h11.Data:
                break
            parts.append(event.data)
            event = None
    finally:
        moved = b"".join(parts)
        if moved:
            sink.queue(h11.Data(data=moved))
    return event, len(moved)


async def _check_chunks(
    chunks: ChunkedChecker, data: bytes | bytearray, error: Callable[..., Exception]
) -> None:
    """Feed the strict chunked checker, a slice of chunk-size lines at a time."""
    pos = 0
    while True:
        try:
            pos = chunks.feed(data, pos, max_chunks=_EVENTS_PER_SLICE)
        except FramingError as exc:
            raise error(f"malformed chunked body: {exc}", status=exc.status) from exc
        if pos >= len(data):
            return
        await trio.lowlevel.checkpoint()


def _client_framing_error(message: str, *, status: int) -> Exception:
    return ClientError(message, status=status)


def _upstream_framing_error(message: str, *, status: int) -> Exception:
    return UpstreamError(f"upstream {message}")


# --- The response ---------------------------------------------------------------------------


async def _read_response_head(
    down: Downstream,
    up: UpstreamConnection,
    request: h11.Request,
    ctx: ProxyContext,
    *,
    watch_client: bool,
) -> tuple[h11.Response | h11.InformationalResponse, bytearray]:
    """Wait for the final response head (or the 101 of an upgrade), relaying other 1xx
    responses on the way (RFC 9110 15.2), all within ``upstream_response_s``.

    Returns it with the bytes received past it (the start of the body), which the strict
    chunked check still has to see.
    """
    deadline = trio.current_time() + ctx.settings.timeouts.upstream_response_s
    limit = ctx.settings.limits.max_header_bytes
    buffer = bytearray()
    searched = 0
    informational = 0
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
            data = await _receive_head_bytes(down, up, deadline, watch_client=watch_client)
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
        informational += 1
        if informational > _MAX_INFORMATIONAL:
            raise UpstreamError(f"upstream {up.address} sent over {_MAX_INFORMATIONAL} 1xx")
        if request.http_version != b"1.0":  # HTTP/1.0 clients get no 1xx (RFC 9110 15.2)
            headers = response_headers(
                event.headers.raw_items(), event.http_version, rules=ctx.forwarding
            )
            down.queue(h11.InformationalResponse(status_code=event.status_code, headers=headers))
            await down.flush(ctx.settings.timeouts.client_send_s)


async def _receive_head_bytes(
    down: Downstream, up: UpstreamConnection, deadline: float, *, watch_client: bool
) -> bytes:
    """The upstream's next bytes of a response head, by ``deadline``, which holds however
    many bytes keep arriving (an origin sending 1xx without end).

    With ``watch_client`` (a body-less request leaves nobody reading the client's socket),
    an answer slower than ``_WATCH_CLIENT_AFTER_S`` is awaited while watching the client: a
    client that gave up ends the exchange (and the upstream connection with it). Nothing is
    read from either socket while both are watched, so giving up loses no byte.
    """
    left_s = deadline - trio.current_time()
    if left_s <= 0:
        raise UpstreamTimeout(f"upstream {up.address} timed out receiving")
    if not watch_client or left_s <= _WATCH_CLIENT_AFTER_S:
        data = await up.recv(left_s)
    elif (ready := await up.recv_if_ready()) is not None:
        data = ready  # under load the answer is usually there already
    else:
        with trio.move_on_after(_WATCH_CLIENT_AFTER_S) as quick:
            await up.wait_readable()
        if quick.cancelled_caught:
            with trio.move_on_at(deadline) as slow:
                await with_side_task(up.wait_readable, partial(_watch_client, down))
            if slow.cancelled_caught:
                raise UpstreamTimeout(f"upstream {up.address} timed out receiving")
        data = await up.recv_after_wait(deadline - trio.current_time())
    up.h11.receive_data(data)
    return data


async def _watch_client(down: Downstream) -> None:
    """Raise ClientGone when the client closes or resets; return if it sends bytes instead
    (a pipelined request tells nothing: then stop watching)."""
    await down.wait_readable()
    if down.peer_closed():
        raise ClientGone("client closed the connection while the upstream was answering")


async def _relay_response(
    down: Downstream,
    up: UpstreamConnection,
    request: h11.Request,
    plan: RequestPlan,
    record: AccessRecord,
    ctx: ProxyContext,
) -> None:
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
    if ctx.draining or down.closing or down.h11.their_state is h11.SEND_BODY:
        # Draining, the connection's last request (limits.keepalive_requests), or answering
        # before the request body was read (an early 413, 401, or a refused 100-continue):
        # this connection closes after the response; say so.
        headers.append((b"Connection", b"close"))
    record.upstream_status = response.status_code
    record.content_type = header_value(raw, b"content-type")
    record.section_io_tag = header_value(raw, b"section-io-tag")
    min_rate = ctx.settings.limits.min_send_rate_bytes_per_s
    if min_rate:  # cleared by forward() once the response is out
        down.send_floor = RateFloor(
            min_rate, ctx.settings.timeouts.client_send_s, trio.current_time(), down.bytes_sent
        )
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
    if chunks is not None and body_start:
        await _check_chunks(chunks, body_start, _upstream_framing_error)
    while True:
        event = _next_upstream_data(up, down, record)
        if event is None:
            await trio.lowlevel.checkpoint()  # a slice done: let others run
        elif event is h11.NEED_DATA:
            data = await _receive_body_bytes(down, up, ctx)
            up.h11.receive_data(data)  # recorded before any checkpoint: nothing read is lost
            if chunks is not None:  # (h11 parses nothing the checker has not passed)
                await _check_chunks(chunks, data, _upstream_framing_error)
        elif isinstance(event, h11.EndOfMessage):
            trailers = trailer_headers(event.headers.raw_items(), raw) if keep_trailers else []
            down.queue(h11.EndOfMessage(headers=trailers))
            return  # the caller flushes, after returning the connection to the pool
        else:
            raise UpstreamError(f"unexpected {type(event).__name__} from upstream {up.address}")


def _next_upstream_data(up: UpstreamConnection, down: Downstream, record: AccessRecord) -> object:
    try:
        event, moved = _move_data(up, down)
    except h11.RemoteProtocolError as exc:
        raise UpstreamError(f"invalid response from upstream {up.address}: {exc}") from exc
    record.body_bytes_sent += moved
    return event


async def _receive_body_bytes(down: Downstream, up: UpstreamConnection, ctx: ProxyContext) -> bytes:
    """The upstream's next response bytes, while the client takes what is queued for it.

    Up to ``response_buffer_bytes`` may wait for a slow client, so a response that fits is
    read whole and its upstream connection freed whatever the client's pace; beyond that the
    client must take bytes before more are read (backpressure, under the send rate floor).
    """
    timeouts = ctx.settings.timeouts
    if down.has_queued and not down.send_queued_nowait():
        if down.queued_bytes >= ctx.settings.limits.response_buffer_bytes:
            await down.flush(timeouts.client_send_s)
        else:
            # Keep sending while the upstream is awaited: a stream that pauses (server-sent
            # events) must not leave its last bytes queued until the next ones come.
            return await with_side_task(
                partial(up.recv, timeouts.upstream_read_s),
                partial(down.send_queued, timeouts.client_send_s),
            )
    return await up.recv(timeouts.upstream_read_s)


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
    down.send_floor = None  # a tunnel idles as long as tunnel_idle_s allows
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


def _next_upstream_event(up: UpstreamConnection) -> object:
    try:
        return up.h11.next_event()
    except h11.RemoteProtocolError as exc:
        if up.bytes_received == 0:  # EOF before any byte: the stale keep-alive race
            raise UpstreamClosed(f"upstream {up.address} closed the connection") from exc
        raise UpstreamError(f"invalid response from upstream {up.address}: {exc}") from exc
