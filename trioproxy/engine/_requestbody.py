"""The request body: buffered before an upstream connection is taken, the rest uploaded live.

A body that fits ``limits.request_buffer_bytes`` is read whole before a connection is taken;
a larger one is uploaded by a side task while the response is relayed (`_exchange`), under
the rate floor the exchange sets and one total deadline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from ..config._settings import Settings, Timeouts
from ..core._accesslog import ExchangeNotes
from ..core._bodylimit import body_limit, check_body_size
from ..core._chunked import ChunkedChecker
from ..core._errors import ClientError, ClientGone, UpstreamError
from ..core._headers import BodyKind, RequestPlan, field_value, trailer_headers
from ._h11 import END_OF_MESSAGE, NextEvent, h11, sendable
from ._peer import Downstream, UpstreamConnection
from ._slices import check_chunks, move_data, take_data

if TYPE_CHECKING:
    from ._hooks import Transform

# The proxy's own answer to an expectation (events are frozen: one serves every request).
# (A module's name, not h11's attribute: read for every request.)
_END = h11.EndOfMessage
_CONTINUE = h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")


@dataclass(slots=True)
class RequestBody:
    """A request body on its way: its framing checker, its one total deadline, and its
    size limit (0: none)."""

    chunks: ChunkedChecker | None
    deadline: float
    limit: int = 0
    # The journal's copy of the body's first bytes, while it wants more (`keep_prefix`).
    prefix: bytearray | None = None
    prefix_bytes: int = 0


def keep_prefix(body: RequestBody, notes: ExchangeNotes, size: int) -> None:
    """Keep the body's first ``size`` bytes for the journal (as received, before any hook's
    transform); 0 keeps none, and the upload moves the bytes as it would without a journal."""
    if size > 0:
        body.prefix = notes.request_body = bytearray()
        body.prefix_bytes = size


def _note(body: RequestBody, data: bytes) -> None:
    assert body.prefix is not None
    body.prefix += data[: body.prefix_bytes - len(body.prefix)]
    if len(body.prefix) >= body.prefix_bytes:
        body.prefix = None  # full: the rest moves untouched


async def buffer_request_body(
    down: Downstream, plan: RequestPlan, settings: Settings
) -> RequestBody | None:
    """Read the request body until it is complete or ``request_buffer_bytes`` are held in
    h11's receive buffer, before any upstream connection is taken. Also the origin never
    sees a request its client did not finish (conformance: the incomplete-request class).

    From here to the body's end one total deadline applies (and the exchange's rate floor).
    The chunked-framing checker returned has seen every byte h11 holds.
    """
    if plan.body is BodyKind.NONE:
        # Take the request's end now, so a failure before any upstream I/O still leaves the
        # downstream connection in step for its next request.
        expect_end_of_request(down)
        return None
    timeouts, limits = settings.timeouts, settings.limits
    body = RequestBody(
        ChunkedChecker() if plan.body is BodyKind.CHUNKED else None,
        trio.current_time() + timeouts.client_body_total_s,
        body_limit(limits.max_request_body_bytes, plan.max_body_bytes),
    )
    length = int(field_value(plan.fields, b"content-length") or 0)
    # Over the body limit: 413 before any byte goes upstream, and before any 100 Continue.
    check_body_size(length, body.limit, chunked=False)
    held = down.h11.trailing_data[0]
    if body.chunks is not None:
        await _check_chunks(body, held)
    buffered = len(held)
    if down.h11.they_are_waiting_for_100_continue:
        if length > limits.request_buffer_bytes:
            return body  # the origin decides: it may refuse a body this large early
        # nginx's way (RFC 9110 10.1.1 lets a proxy answer for the origin): answer the
        # expectation ourselves and take the body, so no upstream connection waits for a
        # client that may never send it. A chunked body is taken up to the buffer too.
        down.queue(_CONTINUE)
        await down.flush(timeouts.client_send_s)
        plan.fields = [item for item in plan.fields if item[1] != b"expect"]
    while buffered < limits.request_buffer_bytes and not _complete(body, buffered, length):
        data = await down.recv(_body_wait_s(body, timeouts.client_body_s))
        down.h11.receive_data(data)  # recorded before any checkpoint: nothing read is lost
        if not data:
            raise ClientGone("client closed the connection mid-body")
        if body.chunks is not None:
            await _check_chunks(body, data)
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
    if not isinstance(event, _END):  # a body-less request ends at once
        raise not_the_end(event)


def not_the_end(event: NextEvent) -> ClientError:
    """What a request without body followed by anything but its end is."""
    return ClientError(f"unexpected {type(event).__name__} after a request without body")


async def upload_body(
    down: Downstream,
    up: UpstreamConnection,
    body: RequestBody,
    timeouts: Timeouts,
    transform: Transform | None = None,
) -> None:
    """Send the body upstream: what is buffered, then the rest as it arrives (a body larger
    than the buffer, under the rate floor and the total deadline). With a hook's
    ``transform``, each slice goes through it first (the request head said chunked)."""
    try:
        while True:
            try:
                if transform is None and body.prefix is None:
                    event, _ = move_data(down, up)
                elif transform is None:
                    event = _kept(down, up, body)
                else:
                    event = await _transformed(down, up, transform, body)
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
                    await _check_chunks(body, data)
            elif isinstance(event, h11.EndOfMessage):
                if transform is not None and (tail := await transform(b"", True)):
                    up.queue(h11.Data(data=tail))
                # (The client's trailers as h11 parsed them, less framing and hop-by-hop fields.)
                trailers = trailer_headers(event.headers.raw_items())
                up.queue(
                    h11.EndOfMessage(headers=sendable(trailers), _parsed=True)
                    if trailers
                    else END_OF_MESSAGE
                )
                await up.flush(timeouts.upstream_send_s)
                return
            else:
                raise ClientError(f"unexpected {type(event).__name__} in request body")
    except UpstreamError:
        # The origin stopped reading: it may have answered early and closed. The relay
        # reports that answer, or the failure if there is none.
        return


def _kept(down: Downstream, up: UpstreamConnection, body: RequestBody) -> NextEvent | None:
    """`move_data`, noting the bytes for the journal."""
    event, data = take_data(down)
    if data:
        _note(body, data)
        up.queue(h11.Data(data=data))
    return event


async def _transformed(
    down: Downstream, up: UpstreamConnection, transform: Transform, body: RequestBody
) -> NextEvent | None:
    event, data = take_data(down)
    if data and body.prefix is not None:
        _note(body, data)
    if data and (out := await transform(data, False)):
        up.queue(h11.Data(data=out))
    return event


async def _check_chunks(body: RequestBody, data: bytes | bytearray) -> None:
    """The strict framing check, then the body limit on the chunk sizes announced so far:
    before h11 parses the chunk, so no byte past the limit is forwarded. Mid-upload the
    exchange then ends: a 413 if no response head went out yet, else the connections close."""
    assert body.chunks is not None
    await check_chunks(body.chunks, data, _client_framing_error)
    check_body_size(body.chunks.declared, body.limit, chunked=True)


def _client_framing_error(message: str, *, status: int) -> Exception:
    return ClientError(message, status=status)
