"""One downstream connection: read request heads, hand each to its exchange (`_exchange`),
keep alive while allowed, linger when closing on a client still sending."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable

import trio

from ..config._settings import Limits
from ..core._errors import ClientError, ClientGone
from ..core._headreader import HeadTooLarge, RequestHeadReader, whole_request_head
from ..core._strict import FramingError
from ._context import ProxyContext
from ._exchange import Exchange, reject
from ._h11 import NextEvent, h11
from ._peer import Downstream, server_h11
from ._transport import Transport

log = logging.getLogger("trioproxy")

# How long, and for how many bytes, a connection closed mid-request-body is drained (nginx's
# lingering_time is 30 s; a short, bounded linger is enough for the answer to arrive).
_LINGER_S = 2.0
_LINGER_BYTES = 1 << 20
# (A module's name, not h11's attribute: read for every request.)
_DONE = h11.DONE
_REQUEST = h11.Request


async def serve_connection(
    transport: Transport, ctx: ProxyContext, release: Callable[[], None]
) -> None:
    """Serve requests on one client connection until it closes, errs, idles out or we drain;
    then close it and ``release`` its slot. The connection's task runs this frame itself,
    with no frame of the server's around it: one frame less to resume at every wait."""
    stats = ctx.stats
    stats.connections_open += 1
    stats.connections_total += 1
    down = Downstream(transport, server_h11(ctx.settings.limits))
    peer_ip, shared = down.peer_ip, ctx.shared
    log.debug("connection opened", extra={"peer": peer_ip})
    try:
        served = 0
        if shared.draining:  # (accepted as the drain began; later, each request's end asks)
            return
        conn = down.h11  # (read again after each exchange, which may give it a fresh one)
        request: NextEvent | None
        while True:
            received_before = down.bytes_received
            # Each request takes the configuration current when its head is read (SIGHUP
            # swaps it), and reads its head under the one current before. (`ctx.now()`,
            # inline: every request passes here.)
            if conn.trailing_data[0]:  # pipelined
                request = await _read_request(down, shared.current or ctx, first=not served)
                if request is None:
                    return
                current = shared.current or ctx  # (again: the read may have waited)
            # The usual case, inline (no coroutine made for it): the next head has arrived
            # already, whole and plainly valid; else `_read_request` carries on from here.
            elif (ready := await down.recv_if_ready()) and whole_request_head(
                ready, (current := shared.current or ctx).settings.limits
            ):
                conn.receive_data(ready)
                try:
                    request = conn.next_event()  # (no other name: an idle wait holds none)
                except h11.RemoteProtocolError as exc:
                    await _refuse(down, current, _malformed(exc))
                    return
                if not isinstance(request, _REQUEST):
                    return  # ConnectionClosed
            else:
                request = await _read_request(
                    down, shared.current or ctx, first=not served, tried=True, ready=ready
                )
                if request is None:
                    return
                current = shared.current or ctx  # (again: the read may have waited)
            served += 1
            down.closing = served >= current.settings.limits.keepalive_requests
            stats.requests += 1  # (every version of the context counts in the same stats)
            # (Made here, not by a function of `_exchange`'s: one call less a request.)
            await Exchange(down, current, request).serve(received_before)
            del request, current  # an idle connection keeps nothing of its last request
            if down.closing or shared.draining:
                return
            # The next cycle only if both sides finished cleanly (h11 rules). (Inline: every
            # request passes here.)
            conn = down.h11
            if conn.our_state is not _DONE or conn.their_state is not _DONE:
                return
            conn.start_next_cycle()
    except ClientGone as exc:
        log.debug("%s", exc, extra={"peer": peer_ip})
        down.close()
    except Exception as exc:  # a bug: this connection ends, never the server
        _internal_error(exc)
    finally:
        try:
            if not down.closed and (
                down.h11.their_state in (h11.SEND_BODY, h11.ERROR)  # answered, it had more
                or _kept_alive_then_drained(down, ctx)
            ):
                await down.linger(_LINGER_S, _LINGER_BYTES)
        except Exception as exc:
            _internal_error(exc)
        finally:
            try:
                down.close()
            except Exception as exc:  # (a bug too: logged, the slot freed, the server on)
                _internal_error(exc)
            finally:
                stats.connections_open -= 1
                release()
            log.debug("connection closed", extra={"peer": peer_ip})


def _internal_error(exc: Exception) -> None:
    where = traceback.extract_tb(exc.__traceback__)[-1]
    log.error("internal error on a connection: %r at %s:%s", exc, where.filename, where.lineno)


def _kept_alive_then_drained(down: Downstream, ctx: ProxyContext) -> bool:
    """Closed by the drain after a response whose head left before it, so it could not say
    ``Connection: close`` (h11 is DONE, not MUST_CLOSE): the client may be sending its next
    request already, and a close with it unread is a reset instead of the EOF it can retry on."""
    return ctx.draining and down.h11.our_state is h11.DONE


async def _read_request(
    down: Downstream,
    ctx: ProxyContext,
    *,
    first: bool,
    tried: bool = False,
    ready: bytes | None = None,
) -> h11.Request | None:
    """The next request head, or None when the connection should simply close. ``tried``:
    the caller has read at once already (`recv_if_ready`), and got ``ready`` (None: nothing
    was there yet)."""
    head = down.h11.trailing_data[0]  # pipelined: already in h11's buffer
    fed = len(head)
    if not fed:
        if not tried:
            if ctx.draining:
                return None
            # Under load the next request is usually there already: read it without
            # entering the idle registry.
            ready = await down.recv_if_ready()
        if ready is None:  # (busy polling first, if it is on and nothing else can run)
            ready = down.recv_if_spun()
        if ready is None:
            # Wait for a first byte: on a new connection no longer than for a whole head (a
            # silent connection is the cheapest slowloris), between requests as long as
            # keep-alive allows. `IdleConnections` closes the connection at that deadline, at
            # once when the proxy starts draining, or when a new client needs the slot (the
            # oldest idle connection goes first, as in nginx); the close ends this wait. The
            # wait is inline and trio's own: an idle connection holds no frame it need not.
            # (No checkpoint since `draining` was read: the drain finds it registered.)
            timeouts = ctx.settings.timeouts
            wait_s = timeouts.client_header_s if first else timeouts.client_idle_s
            idle = ctx.idle
            idle.add(down, wait_s)
            try:
                await down.transport.wait_readable()
            except (trio.ClosedResourceError, OSError):
                pass  # closed by `idle` (then `discard` says so), or broken (the read says so)
            finally:
                waited = idle.discard(down, wait_s)
            if not waited:
                return None  # keep-alive expired, draining or evicted: close quietly
            try:  # (a read that would block after all waits again, for a head's time at most)
                ready = await down.recv_after_wait(timeouts.client_header_s)
            except ClientError:
                return None  # readable, yet nothing came for that long: close quietly
        if not ready:
            return None  # the client closed between requests
        head = ready
    limits = ctx.settings.limits
    try:
        if whole_request_head(head, limits):  # the usual: a whole, plainly valid head
            if not fed:
                down.h11.receive_data(head)
        else:  # (any other: the reader, which accepts or refuses it)
            reader = RequestHeadReader(bytearray(head), limits)
            # (Usually the head is whole in what was read: no coroutine is made to read more.)
            if not _whole_head(down, reader, fed, limits):
                timeout_s = ctx.settings.timeouts.client_header_s
                await _read_rest_of_head(down, reader, limits, timeout_s)
        try:
            event = down.h11.next_event()
        except h11.RemoteProtocolError as exc:
            raise _malformed(exc) from exc
        return event if isinstance(event, h11.Request) else None  # else ConnectionClosed
    except ClientError as exc:  # malformed, oversized, or too slow to arrive (slowloris: 408)
        await _refuse(down, ctx, exc)
        return None
    except _Closed:
        return None


def _malformed(exc: h11.RemoteProtocolError) -> ClientError:
    return ClientError(f"malformed request: {exc}", status=exc.error_status_hint)


async def _refuse(down: Downstream, ctx: ProxyContext, exc: ClientError) -> None:
    """Answer a request head that could not be read, and close the connection."""
    await reject(down, ctx, exc)
    # The rest of the head may still be coming: let the answer land (not for a client too
    # slow to send a head: it gets no more of the connection slot), then close, so the
    # connection's own linger does not run a second time.
    if not down.closed and exc.status != 408:
        await down.linger(_LINGER_S, _LINGER_BYTES)
    elif not down.closed:  # what it sent meanwhile must not turn the close into a reset
        down.drop_arrived(_LINGER_BYTES)
    down.close()


class _Closed(Exception):
    """The client closed the connection between requests."""


def _whole_head(down: Downstream, reader: RequestHeadReader, fed: int, limits: Limits) -> bool:
    """Whether ``reader`` holds a whole request head that passes the strict checks; then h11
    is given the bytes it does not have yet (it has the first ``fed``). Else h11 is left
    holding none of them: partial heads are held once, here, not also in h11's buffer (they
    are what a slowloris makes the proxy hold)."""
    try:
        end = reader.head_end()
    # (One name per handler type: mypyc types a name shared by two handlers by the first.)
    except HeadTooLarge as too_large:
        raise ClientError(str(too_large), status=too_large.status) from too_large
    except FramingError as exc:
        raise ClientError(f"malformed request: {exc}", status=exc.status) from exc
    finally:
        if reader.skipped and fed:
            # Empty lines skipped (RFC 9112 2.2), which h11 does not do: its buffer
            # cannot give bytes back, so the next cycle starts on a fresh h11.
            down.h11 = server_h11(limits)
            fed = 0
    head = reader.buffer
    if end >= 0:
        if len(head) > fed:  # (b"" would tell h11 the client closed)
            down.h11.receive_data(bytes(head[fed:]))
        return True
    if fed:  # a pipelined head not whole yet
        down.h11 = server_h11(limits)
    return False


async def _read_rest_of_head(
    down: Downstream, reader: RequestHeadReader, limits: Limits, timeout_s: float
) -> None:
    """Receive until ``reader`` holds a whole head (`_whole_head`), within ``timeout_s``."""
    deadline = down.clock.current_time() + timeout_s
    while True:
        # Checked here too, not only while waiting: bytes that keep coming (empty lines
        # without end) must not keep the head open past its deadline.
        left_s = deadline - down.clock.current_time()
        if left_s <= 0:
            raise ClientError("client too slow", status=408)
        data = await down.recv(left_s)
        if not data:
            if reader.buffer:
                raise ClientError("connection closed mid-request-head")
            raise _Closed
        reader.add(data)
        if _whole_head(down, reader, 0, limits):
            return
