"""One downstream connection: read requests with h11, forward each, keep alive while allowed."""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING

import trio

from ..config._settings import Limits
from ..core._accesslog import AccessRecord, settle_bytes
from ..core._answers import text_response
from ..core._errors import ClientError, ClientGone, ProxyError
from ..core._headers import (
    TEXT_PLAIN,
    BodyKind,
    RequestPlan,
    header_value,
    new_request_id,
    plan_request,
    reason_phrase,
)
from ..core._headreader import HeadTooLarge, RequestHeadReader
from ..core._requestview import request_view
from ..core._ruleengine import Decision
from ..core._rulemodel import Response
from ..core._strict import FramingError
from ._context import ProxyContext
from ._diagnostics import describe_decision, request_fields
from ._exchange import Exchange
from ._forward import forward
from ._h11 import h11
from ._peer import Downstream
from ._requestbody import expect_end_of_request as _expect_end_of_request
from ._transport import Transport

if TYPE_CHECKING:
    from ._hooks import HookCalls

log = logging.getLogger("trioproxy")

# How long, and for how many bytes, a connection closed mid-request-body is drained (nginx's
# lingering_time is 30 s; a short, bounded linger is enough for the answer to arrive).
_LINGER_S = 2.0
_LINGER_BYTES = 1 << 20

# nginx's convention for the access log: the client closed the connection before a
# response status went out. Never sent on the wire.
CLIENT_CLOSED_REQUEST = 499


async def serve_connection(transport: Transport, ctx: ProxyContext) -> None:
    """Serve requests on one client connection until it closes, errs, idles out or we drain."""
    down = Downstream(transport, _fresh_h11(ctx.settings.limits))
    peer_ip = down.peer_ip
    log.debug("connection opened", extra={"peer": peer_ip})
    try:
        served = 0
        while True:
            received_before = down.bytes_received
            # Each request takes the configuration current when it starts (SIGHUP swaps it).
            request = await _read_request(down, ctx.now(), first=not served)
            if request is None:
                return
            served += 1
            current = ctx.now()
            down.closing = served >= current.settings.limits.keepalive_requests
            await _serve_request(down, request, current, received_before)
            del request, current  # an idle connection keeps nothing of its last request
            if down.closing or ctx.draining or not _next_cycle(down):
                return
    except ClientGone as exc:
        log.debug("%s", exc, extra={"peer": peer_ip})
        down.close()
    finally:
        try:
            if not down.closed and down.h11.their_state in (h11.SEND_BODY, h11.ERROR):
                await down.linger(_LINGER_S, _LINGER_BYTES)  # answered, it had more to send
        finally:
            down.close()
            log.debug("connection closed", extra={"peer": peer_ip})


async def _read_request(down: Downstream, ctx: ProxyContext, *, first: bool) -> h11.Request | None:
    """The next request head, or None when the connection should simply close."""
    timeouts = ctx.settings.timeouts
    head = bytearray(down.h11.trailing_data[0])  # pipelined: already in h11's buffer
    fed = len(head)
    if not head:
        # Wait for a first byte: on a new connection no longer than for a whole head (a
        # silent connection is the cheapest slowloris), between requests as long as
        # keep-alive allows; and give up at once if the proxy starts draining, or if a new
        # client needs the slot (the oldest idle connection goes first, as in nginx).
        # The idle scope carries the deadline itself: an idle connection holds one cancel
        # scope, not two (idle keep-alive connections are what a proxy holds most of).
        wait_s = timeouts.client_header_s if first else timeouts.client_idle_s
        with trio.CancelScope(deadline=trio.current_time() + wait_s) as idle:
            ctx.idle_scopes[idle] = None
            try:
                if ctx.draining:
                    return None
                head += await down.recv(math.inf)
                if not head:
                    return None  # the client closed between requests
            finally:
                del ctx.idle_scopes[idle]
        if idle.cancelled_caught:  # keep-alive expired, draining or evicted: close quietly
            return None
    try:
        deadline = trio.current_time() + timeouts.client_header_s
        await _read_request_head(down, head, fed, ctx.settings.limits, deadline)
        return _parsed_request(down)
    except ClientError as exc:  # malformed, oversized, or too slow to arrive (slowloris: 408)
        await _reject(down, ctx, exc)
        # The rest of the head may still be coming: let the answer land (not for a client
        # too slow to send a head: it gets no more of the connection slot), then close, so
        # the connection's own linger does not run a second time.
        if not down.closed and exc.status != 408:
            await down.linger(_LINGER_S, _LINGER_BYTES)
        down.close()
        return None
    except _Closed:
        return None


class _Closed(Exception):
    """The client closed the connection between requests."""


async def _read_request_head(
    down: Downstream, head: bytearray, fed: int, limits: Limits, deadline: float
) -> None:
    """Receive until ``head`` holds a whole request head that passes the strict checks, by
    the deadline (usually it is all there already: then nothing waits), then give h11 the
    bytes it does not have yet (the first ``fed`` it has). Partial heads are held once, here,
    not also in h11's buffer: they are what a slowloris makes the proxy hold."""
    reader = RequestHeadReader(head, limits)
    while True:
        try:
            end = reader.head_end()
        except HeadTooLarge as exc:
            raise ClientError(str(exc), status=exc.status) from exc
        except FramingError as exc:
            raise ClientError(f"malformed request: {exc}", status=exc.status) from exc
        finally:
            if reader.skipped and fed:
                # Empty lines skipped (RFC 9112 2.2), which h11 does not do: its buffer
                # cannot give bytes back, so the next cycle starts on a fresh h11.
                down.h11 = _fresh_h11(limits)
                fed = 0
        if end >= 0:
            if len(head) > fed:  # (b"" would tell h11 the client closed)
                down.h11.receive_data(bytes(head[fed:]))
            return
        # Checked here too, not only while waiting: bytes that keep coming (empty lines
        # without end) must not keep the head open past its deadline.
        left_s = deadline - trio.current_time()
        if left_s <= 0:
            raise ClientError("client too slow", status=408)
        if fed:  # a pipelined head not whole yet: hold it here only, not also in h11's buffer
            down.h11 = _fresh_h11(limits)
            fed = 0
        data = await down.recv(left_s)
        if not data:
            if head:
                raise ClientError("connection closed mid-request-head")
            raise _Closed
        reader.add(data)


def _fresh_h11(limits: Limits) -> h11.Connection:
    """A new server state machine for a connection between requests (both sides IDLE, so
    it knows nothing the old one did not)."""
    return h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)


def _parsed_request(down: Downstream) -> h11.Request | None:
    try:
        event = down.h11.next_event()
    except h11.RemoteProtocolError as exc:
        raise ClientError(f"malformed request: {exc}", status=exc.error_status_hint) from exc
    if isinstance(event, h11.Request):
        return event
    return None  # ConnectionClosed


async def _serve_request(
    down: Downstream, request: h11.Request, ctx: ProxyContext, received_before: int
) -> None:
    ctx.stats.requests += 1
    record = AccessRecord(
        start_wall=time.time(),
        peer=down.peer_ip,
        method=request.method,
        target=request.target,
        http_version=request.http_version,
    )
    started = trio.current_time()
    sent_before = down.bytes_sent
    hooks: HookCalls | None = None
    try:
        raw = request.headers.raw_items()
        plan = plan_request(
            request.method,
            request.target,
            raw,
            request.http_version,
            peer_ip=down.peer_ip.encode("ascii"),
            rules=ctx.forwarding,
            upstream_authority=ctx.upstream_authority,
            max_header_count=ctx.settings.limits.max_header_count,
        )
        _note_request(record, plan)
        if ctx.rule_engine:
            # Conditions see the client's own headers, not our X-Forwarded-For or Via.
            view = request_view(
                request.method, plan.target, raw, down.peer_ip, peer_trusted=plan.peer_trusted
            )
            decision = ctx.rule_engine.evaluate(view, trio.current_time())
            log.debug("rules: %s", describe_decision(decision), extra=request_fields(record))
            if decision.actions and ctx.hooks is not None:
                # HOOKS (call site 1 of 3: the request, after the rules); the port to the
                # shaped exchange moves this into its lifecycle.
                answer, hooks = await ctx.hooks.on_request(decision, view, plan.request_id)
                if answer is not None:
                    decision = decision._replace(response=_head_safe(answer, request))
            if decision.response is not None:
                ex = Exchange(down, request, plan, record, ctx, hooks=hooks)
                await _answer_from_rules(ex, decision)
                return
            if decision.target is not None:
                plan.target = decision.target
            if decision.request_ops:
                plan.headers = decision.request_headers(plan.headers)
            if decision.response_edits:
                plan.edit_response = decision.response_headers
            if hooks is not None:
                plan.target = hooks.target() or plan.target
                plan.headers = hooks.request_headers(plan.headers)
        await forward(Exchange(down, request, plan, record, ctx, hooks=hooks))
    except ProxyError as exc:
        record.request_id = record.request_id or new_request_id()  # for the line and answer
        log.log(
            logging.WARNING if exc.status >= 500 else logging.INFO,
            "%s %s: %s (%d)",
            request.method.decode("ascii", "replace"),
            request.target.decode("ascii", "replace")[:200],
            exc,
            exc.status,
            extra=request_fields(record, ctx.upstream_authority, failure=_failure(exc)),
        )
        if _can_respond(down):
            record.status = exc.status
            await _send_error(down, ctx, exc, record)
    except ClientGone:
        if not record.status:
            record.status = CLIENT_CLOSED_REQUEST
        raise
    finally:
        record.duration_s = trio.current_time() - started
        settle_bytes(record, sent_before, down.bytes_sent)
        record.bytes_received = down.bytes_received - received_before
        try:
            if hooks is not None:  # HOOKS (call site 3 of 3: the access line)
                await hooks.on_access(record)
        finally:
            ctx.log_access(record)


def _head_safe(answer: Response, request: h11.Request) -> Response:
    """A hook's answer to a HEAD request: its head alone (Content-Length stays the GET's)."""
    if request.method == b"HEAD" and answer.body:
        return Response(answer.status, answer.headers)
    return answer


async def _answer_from_rules(ex: Exchange, decision: Decision) -> None:
    """A rule answers (redirect, deny, static response, 429): nothing goes upstream."""
    down, plan, record = ex.down, ex.plan, ex.record
    answer = decision.response
    assert answer is not None
    headers = list(answer.headers)
    if decision.actions:  # a hook answered: the rules' response edits are not applied yet
        headers = decision.response_headers(answer.status, headers)
    if ex.hooks is not None:  # their response-header edits apply to any answer
        headers = ex.hooks.response_headers(headers)
    headers.append((b"X-Request-ID", plan.request_id))
    if plan.body is BodyKind.NONE:
        _expect_end_of_request(down)  # in step for the next request
    if ex.last_on_connection:  # (an unread body too: it makes reuse impossible)
        headers.append((b"Connection", b"close"))
    down.queue(
        h11.Response(
            status_code=answer.status,
            headers=headers,
            reason=reason_phrase(answer.status, b""),
            _parsed=True,  # validated when the rules were loaded
        )
    )
    record.body_start = down.bytes_sent + down.queued_bytes
    if answer.body:
        down.queue(h11.Data(data=answer.body))
    down.queue(h11.EndOfMessage())
    record.status = answer.status
    record.body_bytes_sent = len(answer.body)
    record.content_type = header_value(answer.headers, b"content-type")
    await ex.flush_to_client()


def _note_request(record: AccessRecord, plan: RequestPlan) -> None:
    noted = plan.noted
    record.host = plan.host
    record.request_id = plan.request_id
    record.referrer = noted.get(b"referer", b"")
    record.user_agent = noted.get(b"user-agent", b"")
    record.x_forwarded_proto = noted.get(b"x-forwarded-proto", b"")
    record.x_forwarded_for = noted.get(b"x-forwarded-for", b"")
    record.true_client_ip = noted.get(b"true-client-ip", b"")
    record.section_io_id = noted.get(b"section-io-id", b"")


async def _reject(down: Downstream, ctx: ProxyContext, exc: ClientError) -> None:
    """Answer a request we could not read, log it, and leave the connection to close."""
    record = AccessRecord(start_wall=time.time(), peer=down.peer_ip, status=exc.status)
    record.request_id = new_request_id()  # for the line, the answer and the access log
    log.info("%s (%d)", exc, exc.status, extra=request_fields(record))
    sent_before = down.bytes_sent
    try:
        if _can_respond(down):
            await _send_error(down, ctx, exc, record)
    finally:
        settle_bytes(record, sent_before, down.bytes_sent)
        ctx.log_access(record)


def _failure(exc: ProxyError) -> str:
    # Upstream failures repeat under load: identical ones are aggregated on stderr.
    return f"{exc} ({exc.status})" if exc.status >= 500 else ""


def _can_respond(down: Downstream) -> bool:
    return down.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE) and not down.has_queued


async def _send_error(
    down: Downstream, ctx: ProxyContext, exc: ProxyError, record: AccessRecord
) -> None:
    """A short plain-text answer, logged as sent. Client errors close the connection (the
    stream may be out of sync); upstream errors keep it if the request was read whole."""
    answer = text_response(exc.status)  # "502 Bad Gateway\n", with its framing fields
    record.request_id = record.request_id or new_request_id()  # an unreadable request has none
    headers = [*answer.headers, (b"X-Request-ID", record.request_id)]
    if (
        isinstance(exc, ClientError)
        or ctx.draining
        or down.closing
        or down.h11.their_state is h11.SEND_BODY
    ):
        headers.append((b"Connection", b"close"))
    try:
        reason = reason_phrase(exc.status, b"")
        down.queue(h11.Response(status_code=exc.status, headers=headers, reason=reason))
        record.body_start = down.bytes_sent + down.queued_bytes
        record.body_bytes_sent, record.content_type = len(answer.body), TEXT_PLAIN
        down.queue(h11.Data(data=answer.body))
        down.queue(h11.EndOfMessage())
    except ProxyError:  # h11 will not send it in this state: the connection just closes
        return
    await down.flush(ctx.settings.timeouts.client_send_s)


def _next_cycle(down: Downstream) -> bool:
    """Start the next request cycle if both sides finished cleanly (h11 rules)."""
    conn = down.h11
    if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
        conn.start_next_cycle()
        return True
    return False
