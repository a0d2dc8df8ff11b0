"""The response, for the exchange (`_exchange`), which writes its head to the client between
the two halves here: its head read (1xx relayed, the client watched), then its body relayed
with read-ahead.

A response that fits ``limits.response_buffer_bytes`` is read whole, so its upstream
connection goes back to the pool before the client has to take it; a larger one streams
under the send rate floor.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

import trio

from ..config._settings import Settings
from ..core._accesslog import AccessRecord
from ..core._chunked import ChunkedChecker
from ..core._errors import ClientGone, UpstreamError, UpstreamTimeout
from ..core._headers import response_headers, trailer_headers
from ..core._headreader import HeadTooLarge, ResponseHeadReader, whole_response_head
from ..core._strict import FramingError
from ._context import ProxyContext
from ._h11 import END_OF_MESSAGE, NextEvent, h11, sendable
from ._peer import Downstream, UpstreamConnection
from ._race import with_side_task
from ._slices import check_chunks, move_data, take_data

if TYPE_CHECKING:
    from ._hooks import Transform

# A response head slower than this starts a watch on the client's socket.
WATCH_CLIENT_AFTER_S = 1.0
_WATCH_CLIENT_AFTER_S = WATCH_CLIENT_AFTER_S
# Informational responses relayed for one request: far more than any origin sends (a 100
# and a few 103s); an origin sending them without end gets a 502 instead of a busy loop.
_MAX_INFORMATIONAL = 32


def _upstream_framing_error(message: str, *, status: int) -> Exception:
    return UpstreamError(f"upstream {message}")


async def read_response_head(
    down: Downstream,
    up: UpstreamConnection,
    ctx: ProxyContext,
    *,
    http_version: bytes,
    watch_client: bool,
    tried: bool = False,
    first: bytes | None = None,
) -> tuple[h11.Response | h11.InformationalResponse, bytearray]:
    """Wait for the final response head (or the 101 of an upgrade), relaying other 1xx
    responses on the way (RFC 9110 15.2) to a client of ``http_version``, all within
    ``upstream_response_s``.

    Returns it with the bytes received past it (the start of the body), which the strict
    chunked check still has to see. ``tried``: the caller has read at once already
    (`recv_if_ready`, as the first read here would have) and got ``first`` (None: nothing
    was there yet; then nothing yielded in between, and the deadline starts as it would
    have; after bytes, one fairness yield later).
    """
    started = up.clock.current_time()
    deadline = started + ctx.settings.timeouts.upstream_response_s
    now: float | None = started  # (read once for the first bytes; later ones read it again)
    limits = ctx.settings.limits
    # Made only for a head that is not whole and plainly valid in the first bytes, or after a
    # 1xx: the usual head is judged by `whole_response_head` alone.
    reader: ResponseHeadReader | None = None
    informational = 0
    end = -1  # (nothing received yet: no need to look)
    while True:
        if end < 0:
            # The upstream's next bytes of the head, by ``deadline``, which holds however many
            # bytes keep arriving (an origin sending 1xx without end). (Inline but for the
            # slow watch: a coroutine frame less to resume at every wait of every head.)
            if now is None:
                now = up.clock.current_time()
            left_s = deadline - now
            if left_s <= 0:
                raise UpstreamTimeout(f"upstream {up.address} timed out receiving")
            if first is not None:  # (what the caller read)
                data, first = first, None
            elif not watch_client or left_s <= _WATCH_CLIENT_AFTER_S:
                data = await up.recv(left_s)
            elif not tried and (ready := await up.recv_if_ready()) is not None:
                data = ready  # under load the answer is usually there already
            elif (ready := up.recv_if_spun()) is not None:
                data = ready  # one request at a time: busy polling caught it
            elif await up.wait_readable_or_woken(ctx.origin_waits, now + _WATCH_CLIENT_AFTER_S):
                # (Most answers come within the second: no cancel scope entered, `OriginWaits`.)
                data = await up.recv_after_wait(deadline - up.clock.current_time())
            else:
                data = await _receive_watching_client(down, up, deadline)
            now = None
            tried = False
            up.h11.receive_data(data)
            if not data:  # EOF: before any byte, the stale keep-alive race; else a cut head
                raise up.failure(
                    f"upstream {up.address} closed the connection",
                    f"upstream {up.address} closed mid-response-head",
                )
            if reader is not None:
                reader.add(data)
            elif (end := whole_response_head(data, limits)) < 0:
                reader = ResponseHeadReader(bytearray(data), limits)
        if reader is None:
            received = bytearray(data[end:])
        else:
            try:
                end = reader.head_end()
            # (One name per handler type: mypyc types a name shared by two handlers by the first.)
            except HeadTooLarge as too_large:
                raise UpstreamError(
                    f"response head from upstream {up.address} too large"
                ) from too_large
            except FramingError as exc:
                raise UpstreamError(
                    f"malformed response from upstream {up.address}: {exc}"
                ) from exc
            if end < 0:
                continue
            reader.drop(end)
            received = reader.buffer
        try:  # (inline, not a function of its own: every response passes here)
            event = up.h11.next_event()
        except h11.RemoteProtocolError as exc:  # (EOF before any byte: the stale keep-alive race)
            raise invalid_head(up, exc) from exc
        if isinstance(event, h11.Response):
            return event, received
        if not isinstance(event, h11.InformationalResponse):
            raise UpstreamError(f"unexpected {type(event).__name__} from upstream {up.address}")
        if event.status_code == 101:  # h11 lets it through only if we proposed an upgrade
            return event, received
        if reader is None:  # (the bytes past the 1xx, to look at before receiving more)
            reader = ResponseHeadReader(received, limits)
        informational += 1
        if informational > _MAX_INFORMATIONAL:
            raise UpstreamError(f"upstream {up.address} sent over {_MAX_INFORMATIONAL} 1xx")
        if http_version != b"1.0":  # HTTP/1.0 clients get no 1xx (RFC 9110 15.2)
            headers = response_headers(
                event.headers.raw_items(), event.http_version, rules=ctx.forwarding
            )
            # (The origin's fields as h11 parsed them, less hop-by-hop ones, and our Via.)
            down.queue(
                h11.InformationalResponse(
                    status_code=event.status_code, headers=sendable(headers), _parsed=True
                )
            )
            await down.flush(ctx.settings.timeouts.client_send_s)


async def _receive_watching_client(
    down: Downstream, up: UpstreamConnection, deadline: float
) -> bytes:
    """The upstream's next bytes of a response head, by ``deadline``, once they have been
    awaited for ``_WATCH_CLIENT_AFTER_S`` for a request without a body
    (`read_response_head`'s ``watch_client``): nobody reads the client's socket then, so
    the rest of the wait watches the client too: a client that gave up ends the exchange
    (and the upstream connection with it). Nothing is read from either socket while both
    are watched, so giving up loses no byte. (A scope here is no cost: few answers are
    this slow.)"""
    with trio.move_on_at(deadline) as slow:
        await with_side_task(up.wait_readable, partial(_watch_client, down))
    if slow.cancelled_caught:
        raise UpstreamTimeout(f"upstream {up.address} timed out receiving")
    return await up.recv_after_wait(deadline - trio.current_time())


async def _watch_client(down: Downstream) -> None:
    """Raise ClientGone when the client closes or resets; return if it sends bytes instead
    (a pipelined request tells nothing: then stop watching)."""
    await down.wait_readable()
    if down.peer_closed():
        raise ClientGone("client closed the connection while the upstream was answering")


async def relay_body(
    down: Downstream,
    up: UpstreamConnection,
    record: AccessRecord,
    head: Sequence[tuple[bytes, bytes]],
    received: bytearray,
    settings: Settings,
    *,
    chunked: bool,
    keep_trailers: bool,
    transform: Transform | None = None,
) -> None:
    """Relay the response body, whose head (``head``: the origin's header fields) the client
    has been sent, to its end; the last bytes stay queued for the exchange to flush after
    the connection went back to the pool. ``received``: its first bytes, already read;
    ``chunked``: the head has a Transfer-Encoding (checked strictly as it arrives).
    With a hook's ``transform``, each slice goes through it first (the head the client got
    has no Content-Length: h11 frames what the hook returns)."""
    chunks = ChunkedChecker() if chunked else None
    if chunks is not None and received:
        await check_chunks(chunks, received, _upstream_framing_error)
    while True:
        if transform is None:
            event = relay_slice(down, up, record)
        else:
            event = await _transformed(up, down, record, transform)
        if event is None:
            await trio.lowlevel.checkpoint()  # a slice done: let others run
        elif event is h11.NEED_DATA:
            data = await _receive_body_bytes(down, up, settings)
            up.h11.receive_data(data)  # recorded before any checkpoint: nothing read is lost
            if chunks is not None:  # (h11 parses nothing the checker has not passed)
                await check_chunks(chunks, data, _upstream_framing_error)
        elif isinstance(event, h11.EndOfMessage):
            if transform is not None and (tail := await transform(b"", True)):
                down.queue(h11.Data(data=tail))
                record.body_bytes_sent += len(tail)
            trailers = trailer_headers(event.headers.raw_items(), head) if keep_trailers else []
            # (The origin's trailers, as h11 parsed them, less framing and hop-by-hop fields.)
            down.queue(
                h11.EndOfMessage(headers=sendable(trailers), _parsed=True)
                if trailers
                else END_OF_MESSAGE
            )
            return
        else:
            raise UpstreamError(f"unexpected {type(event).__name__} from upstream {up.address}")


async def _transformed(
    up: UpstreamConnection, down: Downstream, record: AccessRecord, transform: Transform
) -> NextEvent | None:
    try:
        event, data = take_data(up)
    except h11.RemoteProtocolError as exc:
        raise UpstreamError(f"invalid response from upstream {up.address}: {exc}") from exc
    if data and (out := await transform(data, False)):
        down.queue(h11.Data(data=out))
        record.body_bytes_sent += len(out)
    return event


def relay_slice(down: Downstream, up: UpstreamConnection, record: AccessRecord) -> NextEvent | None:
    """Move a slice of the response body h11 holds to the client, counted in the record; the
    event that ended it, which the caller handles (None: the slice's size did). Usually
    the whole body, read with its head: then that is all its relay does (`_exchange`)."""
    try:
        event, moved = move_data(up, down)
    except h11.RemoteProtocolError as exc:
        raise invalid_response(up, exc) from exc
    record.body_bytes_sent += moved
    return event


def invalid_head(up: UpstreamConnection, exc: h11.RemoteProtocolError) -> UpstreamError:
    return up.failure(
        f"upstream {up.address} closed the connection",
        f"invalid response from upstream {up.address}: {exc}",
    )


def invalid_response(up: UpstreamConnection, exc: h11.RemoteProtocolError) -> UpstreamError:
    return UpstreamError(f"invalid response from upstream {up.address}: {exc}")


def unexpected_event(up: UpstreamConnection, event: NextEvent) -> UpstreamError:
    return UpstreamError(f"unexpected {type(event).__name__} from upstream {up.address}")


async def _receive_body_bytes(
    down: Downstream, up: UpstreamConnection, settings: Settings
) -> bytes:
    """The upstream's next response bytes, while the client takes what is queued for it.

    Up to ``response_buffer_bytes`` may wait for a slow client, so a response that fits is
    read whole and its upstream connection freed whatever the client's pace; beyond that the
    client must take bytes before more are read (backpressure, under the send rate floor).
    """
    timeouts = settings.timeouts
    if down.has_queued and not down.send_queued_nowait():
        if down.queued_bytes >= settings.limits.response_buffer_bytes:
            await down.flush(timeouts.client_send_s)
        else:
            # Keep sending while the upstream is awaited: a stream that pauses (server-sent
            # events) must not leave its last bytes queued until the next ones come.
            return await with_side_task(
                partial(up.recv, timeouts.upstream_read_s),
                partial(down.send_queued, timeouts.client_send_s),
            )
    return await up.recv(timeouts.upstream_read_s)
