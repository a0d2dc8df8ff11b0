"""The response: its head (1xx relayed, the client watched), its body relayed with read-ahead.

A response that fits ``limits.response_buffer_bytes`` is read whole, so its upstream
connection goes back to the pool before the client has to take it; a larger one streams
under the send rate floor. A 101 hands both connections to `_tunnel` instead.
"""

from __future__ import annotations

from functools import partial

import trio

from ..core._accesslog import AccessRecord
from ..core._chunked import ChunkedChecker
from ..core._errors import ClientGone, UpstreamClosed, UpstreamError, UpstreamTimeout
from ..core._headers import (
    BodyKind,
    header_value,
    reason_phrase,
    response_headers,
    trailer_headers,
)
from ..core._headreader import HeadTooLarge, ResponseHeadReader
from ..core._rulemodel import Response
from ..core._strict import FramingError
from ._exchange import Exchange
from ._h11 import h11
from ._peer import Downstream, RateFloor, UpstreamConnection
from ._race import with_side_task
from ._slices import check_chunks, move_data
from ._tunnel import splice

# A response head slower than this starts a watch on the client's socket.
_WATCH_CLIENT_AFTER_S = 1.0
# Informational responses relayed for one request: far more than any origin sends (a 100
# and a few 103s); an origin sending them without end gets a 502 instead of a busy loop.
_MAX_INFORMATIONAL = 32


def _upstream_framing_error(message: str, *, status: int) -> Exception:
    return UpstreamError(f"upstream {message}")


async def _read_response_head(
    ex: Exchange, *, watch_client: bool
) -> tuple[h11.Response | h11.InformationalResponse, bytearray]:
    """Wait for the final response head (or the 101 of an upgrade), relaying other 1xx
    responses on the way (RFC 9110 15.2), all within ``upstream_response_s``.

    Returns it with the bytes received past it (the start of the body), which the strict
    chunked check still has to see.
    """
    down, up, ctx = ex.down, ex.upstream, ex.ctx
    deadline = trio.current_time() + ctx.settings.timeouts.upstream_response_s
    reader = ResponseHeadReader(bytearray(), ctx.settings.limits)
    informational = 0
    while True:
        try:
            end = reader.head_end()
        except HeadTooLarge as exc:
            raise UpstreamError(f"response head from upstream {up.address} too large") from exc
        except FramingError as exc:
            raise UpstreamError(f"malformed response from upstream {up.address}: {exc}") from exc
        if end < 0:
            data = await _receive_head_bytes(down, up, deadline, watch_client=watch_client)
            if not data:  # EOF: before any byte, the stale keep-alive race; else a cut head
                if up.bytes_received == 0:
                    raise UpstreamClosed(f"upstream {up.address} closed the connection")
                raise UpstreamError(f"upstream {up.address} closed mid-response-head")
            reader.add(data)
            continue
        reader.drop(end)
        event = _next_upstream_event(up)
        if isinstance(event, h11.Response):
            return event, reader.buffer
        if not isinstance(event, h11.InformationalResponse):
            raise UpstreamError(f"unexpected {type(event).__name__} from upstream {up.address}")
        if event.status_code == 101:  # h11 lets it through only if we proposed an upgrade
            return event, reader.buffer
        informational += 1
        if informational > _MAX_INFORMATIONAL:
            raise UpstreamError(f"upstream {up.address} sent over {_MAX_INFORMATIONAL} 1xx")
        if ex.request.http_version != b"1.0":  # HTTP/1.0 clients get no 1xx (RFC 9110 15.2)
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


async def relay_response(ex: Exchange) -> None:
    plan, record, ctx = ex.plan, ex.record, ex.ctx
    response, body_start = await _read_response_head(ex, watch_client=plan.body is BodyKind.NONE)
    # From here on the client has (queued) bytes: an upstream failure can only abort it.
    raw = response.headers.raw_items()
    if isinstance(response, h11.InformationalResponse):  # 101: the upgrade was accepted
        await _tunnel(ex, response)
        return
    down, up = ex.down, ex.upstream
    headers = response_headers(
        raw, response.http_version, rules=ctx.forwarding, request_id=record.request_id
    )
    if plan.edit_response is not None:  # response-header rules
        headers = plan.edit_response(response.status_code, headers)
    if ex.hooks is not None:  # HOOKS (call site 2 of 3: the response head)
        replacement, headers = await ex.hooks.on_response(response.status_code, headers)
        if replacement is not None:
            record.upstream_status = response.status_code
            await _replace_response(ex, replacement)
            return
    if ex.last_on_connection:
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
    keep_trailers = ex.request.http_version != b"1.0" and not header_value(
        headers, b"content-length"
    )
    chunks = ChunkedChecker() if header_value(raw, b"transfer-encoding") else None
    if chunks is not None and body_start:
        await check_chunks(chunks, body_start, _upstream_framing_error)
    while True:
        event = _next_upstream_data(up, down, record)
        if event is None:
            await trio.lowlevel.checkpoint()  # a slice done: let others run
        elif event is h11.NEED_DATA:
            data = await _receive_body_bytes(ex)
            up.h11.receive_data(data)  # recorded before any checkpoint: nothing read is lost
            if chunks is not None:  # (h11 parses nothing the checker has not passed)
                await check_chunks(chunks, data, _upstream_framing_error)
        elif isinstance(event, h11.EndOfMessage):
            trailers = trailer_headers(event.headers.raw_items(), raw) if keep_trailers else []
            down.queue(h11.EndOfMessage(headers=trailers))
            return  # the caller flushes, after returning the connection to the pool
        else:
            raise UpstreamError(f"unexpected {type(event).__name__} from upstream {up.address}")


async def _replace_response(ex: Exchange, answer: Response) -> None:
    """A hook replaced the origin's response: send its answer instead. The origin's body is
    left unread, so its connection is not reused (`UpstreamConnection.reusable`)."""
    down, record = ex.down, ex.record
    headers = [*answer.headers, (b"X-Request-ID", record.request_id)]
    if ex.last_on_connection:
        headers.append((b"Connection", b"close"))
    reason = reason_phrase(answer.status, b"")
    down.queue(h11.Response(status_code=answer.status, headers=headers, reason=reason))
    record.body_start = down.bytes_sent + down.queued_bytes
    body = b"" if ex.request.method == b"HEAD" else answer.body
    if body:
        down.queue(h11.Data(data=body))
    down.queue(h11.EndOfMessage())
    record.status = answer.status
    record.body_bytes_sent = len(body)
    record.content_type = header_value(answer.headers, b"content-type")


def _next_upstream_data(up: UpstreamConnection, down: Downstream, record: AccessRecord) -> object:
    try:
        event, moved = move_data(up, down)
    except h11.RemoteProtocolError as exc:
        raise UpstreamError(f"invalid response from upstream {up.address}: {exc}") from exc
    record.body_bytes_sent += moved
    return event


async def _receive_body_bytes(ex: Exchange) -> bytes:
    """The upstream's next response bytes, while the client takes what is queued for it.

    Up to ``response_buffer_bytes`` may wait for a slow client, so a response that fits is
    read whole and its upstream connection freed whatever the client's pace; beyond that the
    client must take bytes before more are read (backpressure, under the send rate floor).
    """
    down, up, timeouts = ex.down, ex.upstream, ex.timeouts
    if down.has_queued and not down.send_queued_nowait():
        if down.queued_bytes >= ex.limits.response_buffer_bytes:
            await down.flush(timeouts.client_send_s)
        else:
            # Keep sending while the upstream is awaited: a stream that pauses (server-sent
            # events) must not leave its last bytes queued until the next ones come.
            return await with_side_task(
                partial(up.recv, timeouts.upstream_read_s),
                partial(down.send_queued, timeouts.client_send_s),
            )
    return await up.recv(timeouts.upstream_read_s)


async def _tunnel(ex: Exchange, switch: h11.InformationalResponse) -> None:
    """Relay the 101 and splice the two connections; neither is reused afterwards (h11
    leaves both in SWITCHED_PROTOCOL, which the pool and the keep-alive loop refuse)."""
    down, up, record, ctx = ex.down, ex.upstream, ex.record, ex.ctx
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
    await ex.flush_to_client()
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
