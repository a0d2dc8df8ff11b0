"""One request's exchange, from its head to its access line, in named phases.

`serve_request` runs the life of a request whose head `_connection` has read, on one
`Exchange`, in this order:

1. **start**: the access record and the forwarding plan (`core._headers.plan_request`);
2. **rules**: the [[rules]] decide (`core._ruleengine`): a rule answers and nothing goes
   upstream (`_answer_from_rules`), or the decision shapes the plan (`apply_decision`);
3. **forward**: the request body buffered (`_requestbody`), an upstream connection from the
   pool, the request head and body sent, the response head read (`_response`) and written to
   the client, then its body relayed (`_response`) or, after a 101, both connections spliced
   (`_tunnel`); the connection back to the pool, the last bytes flushed to the client. Retried
   once on a fresh connection when a reused one was stale (`_forward`);
4. **error answer**: a `ProxyError` on the way gets a short plain-text answer if no response
   head went out yet (`answer_error`);
5. **access line**: always, last.

A head that could not be read at all (`reject`) has only the last two.

The seams: every response head the client gets, from a rule, an error, the origin or a 101,
is written by one method, `Responder.queue_head`, which owns the ``Connection: close`` rule
and the record's status, body start and content type. The rate floors are this exchange's
alone: set here (`_start_receive_floor`, `_start_send_floor`) and cleared here when
forwarding ends.

Upstream connections are held only while bytes flow: a request body that fits
``limits.request_buffer_bytes`` is read whole before a connection is taken, and a response
that fits ``limits.response_buffer_bytes`` is read whole and its connection released before
the client has to take it. Larger ones stream, under the rate floors. A streamed request body
is uploaded by a side task while this one relays the response, so an origin that answers
early (413, 417, a final status instead of 100 Continue) is heard at once.
"""

from __future__ import annotations

import logging
import time
from functools import partial

import trio

from ..config._settings import Limits, Timeouts
from ..core._accesslog import AccessRecord, settle_bytes
from ..core._answers import text_response
from ..core._errors import ClientError, ClientGone, ProxyError, UpstreamClosed
from ..core._headers import (
    TEXT_PLAIN,
    BodyKind,
    Headers,
    RequestPlan,
    header_value,
    new_request_id,
    plan_request,
    reason_phrase,
    response_headers,
)
from ..core._requestview import request_view
from ..core._ruleengine import apply_decision
from ..core._rulemodel import Response
from ._context import ProxyContext
from ._diagnostics import describe_decision, request_fields
from ._h11 import h11
from ._peer import Downstream, RateFloor, UpstreamConnection
from ._race import with_side_task
from ._requestbody import RequestBody, buffer_request_body, expect_end_of_request, upload_body
from ._response import read_response_head, relay_body
from ._tunnel import splice

log = logging.getLogger("trioproxy")

# nginx's convention for the access log: the client closed the connection before a
# response status went out. Never sent on the wire.
CLIENT_CLOSED_REQUEST = 499


async def serve_request(
    down: Downstream, request: h11.Request, ctx: ProxyContext, received_before: int
) -> None:
    """Serve one request read from ``down``, from its plan to its access line (the bytes
    the connection had received before its head: ``received_before``)."""
    ctx.stats.requests += 1
    await Exchange(down, ctx, request).serve(received_before)


async def reject(down: Downstream, ctx: ProxyContext, exc: ClientError) -> None:
    """Answer a request head we could not read, log it, and leave the connection to close."""
    record = AccessRecord(start_wall=time.time(), peer=down.peer_ip, status=exc.status)
    record.request_id = new_request_id()  # for the line, the answer and the access log
    log.info("%s (%d)", exc, exc.status, extra=request_fields(record))
    sent_before = down.bytes_sent
    try:
        await Responder(down, ctx, record).answer_error(exc)
    finally:
        settle_bytes(record, sent_before, down.bytes_sent)
        ctx.log_access(record)


class Responder:
    """What answers a client's request: its connection, the access record being filled, the
    context the request started under; and the one writer of response heads."""

    __slots__ = ("ctx", "down", "record")

    def __init__(self, down: Downstream, ctx: ProxyContext, record: AccessRecord) -> None:
        self.down = down
        self.ctx = ctx  # the configuration current when the request started
        self.record = record

    def __repr__(self) -> str:
        return f"<{type(self).__name__} [{' | '.join(self._state())}]>"

    def _state(self) -> list[str]:
        record = self.record
        asked = "an unreadable head"
        if record.method:
            method = record.method.decode("ascii", "replace")
            target = record.target.decode("ascii", "replace")
            asked = f"{method} {target[:80]}"
        return [f"{asked} from {record.peer}", f"status {record.status or '-'}"]

    @property
    def last_on_connection(self) -> bool:
        """Whether the client connection closes after this response: draining, its last
        allowed request (``limits.keepalive_requests``), or answered before its request body
        was read (an early 413, 401 or refused 100-continue: an unread body makes reuse
        impossible)."""
        down = self.down
        return self.ctx.draining or down.closing or down.h11.their_state is h11.SEND_BODY

    def queue_head(
        self,
        status: int,
        headers: Headers,
        *,
        reason: bytes = b"",
        content_type: bytes = b"",
        close: bool = False,
        validated: bool = True,
    ) -> None:
        """Queue the response head: the only place one is written (a rule's answer, an error
        answer, the origin's response, a 101). ``Connection: close`` is added when this is
        the connection's last response (or ``close``: the stream may be out of sync); the
        record takes the status, where the body starts and its content type.
        ``validated``: the fields are known valid (parsed by h11, or checked at load)."""
        down, record = self.down, self.record
        record.content_type = content_type
        if status == 101:  # the connection switches protocols: no keep-alive to end
            head: h11.Response | h11.InformationalResponse = h11.InformationalResponse(
                status_code=101, headers=headers, reason=reason, _parsed=validated
            )
        else:
            if close or self.last_on_connection:
                headers.append((b"Connection", b"close"))
            head = h11.Response(
                status_code=status,
                headers=headers,
                reason=reason_phrase(status, reason),
                _parsed=validated,
            )
        down.queue(head)
        record.status = status
        record.body_start = down.bytes_sent + down.queued_bytes

    async def answer_error(self, exc: ProxyError) -> None:
        """A short plain-text answer, if no response head went out yet. Client errors close
        the connection (the stream may be out of sync); upstream errors keep it if the
        request was read whole."""
        down, record = self.down, self.record
        if down.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE) or down.has_queued:
            return
        record.status = exc.status
        answer = text_response(exc.status)  # "502 Bad Gateway\n", with its framing fields
        headers = [*answer.headers, (b"X-Request-ID", record.request_id)]
        try:
            self.queue_head(
                exc.status,
                headers,
                content_type=TEXT_PLAIN,
                close=isinstance(exc, ClientError),
                validated=False,
            )
            record.body_bytes_sent = len(answer.body)
            down.queue(h11.Data(data=answer.body))
            down.queue(h11.EndOfMessage())
        except ProxyError:  # h11 will not send it in this state: the connection just closes
            return
        await self.flush_to_client()

    async def flush_to_client(self) -> None:
        await self.down.flush(self.ctx.settings.timeouts.client_send_s)


class Exchange(Responder):
    """One request's life, and the state that travels with it: the request and its plan,
    the upstream connection while one is held, the body on its way."""

    __slots__ = ("body", "plan", "request", "up")

    plan: RequestPlan  # made by the first phase, `_start`

    def __init__(self, down: Downstream, ctx: ProxyContext, request: h11.Request) -> None:
        record = AccessRecord(
            start_wall=time.time(),
            peer=down.peer_ip,
            method=request.method,
            target=request.target,
            http_version=request.http_version,
        )
        super().__init__(down, ctx, record)
        self.request = request
        self.up: UpstreamConnection | None = None  # while one is held
        self.body: RequestBody | None = None  # a request body still to send upstream

    @property
    def timeouts(self) -> Timeouts:
        return self.ctx.settings.timeouts

    @property
    def limits(self) -> Limits:
        return self.ctx.settings.limits

    @property
    def upstream(self) -> UpstreamConnection:
        assert self.up is not None, f"no upstream connection held: {self!r}"
        return self.up

    def _state(self) -> list[str]:
        asked, status = super()._state()
        return [asked, f"upstream {self.up.address}", status] if self.up else [asked, status]

    async def serve(self, received_before: int) -> None:
        """The phases, in order: start, rules, answer or forward, error answer, access line."""
        down, record = self.down, self.record
        started = trio.current_time()
        sent_before = down.bytes_sent
        try:
            self._start()
            if self.ctx.rule_engine and await self._rules():
                return  # a rule answered
            await self._forward()
        except ProxyError as exc:
            await self._fail(exc)
        except ClientGone:
            if not record.status:
                record.status = CLIENT_CLOSED_REQUEST
            raise
        finally:
            self._access_line(started, sent_before, received_before)

    # --- Start, rules ------------------------------------------------------------------------

    def _start(self) -> None:
        """The forwarding plan (it may refuse the request), and what the record notes of it."""
        request, down, ctx = self.request, self.down, self.ctx
        self.plan = plan = plan_request(
            request.method,
            request.target,
            request.headers.raw_items(),
            request.http_version,
            peer_ip=down.peer_ip.encode("ascii"),
            rules=ctx.forwarding,
            upstream_authority=ctx.upstream_authority,
            max_header_count=ctx.settings.limits.max_header_count,
        )
        _note_request(self.record, plan)

    async def _rules(self) -> bool:
        """Let the [[rules]] decide; True if one answered (nothing goes upstream), else the
        plan now says what the decision does to the request."""
        request, plan = self.request, self.plan
        # Conditions see the client's own headers, not our X-Forwarded-For or Via.
        view = request_view(
            request.method,
            plan.target,
            request.headers.raw_items(),
            self.down.peer_ip,
            peer_trusted=plan.peer_trusted,
        )
        decision = self.ctx.rule_engine.evaluate(view, trio.current_time())
        log.debug("rules: %s", describe_decision(decision), extra=request_fields(self.record))
        if decision.response is None:
            apply_decision(plan, decision)
            return False
        await self._answer_from_rules(decision.response)
        return True

    async def _answer_from_rules(self, answer: Response) -> None:
        """A rule answers (redirect, deny, static response, 429): nothing goes upstream."""
        down = self.down
        if self.plan.body is BodyKind.NONE:
            expect_end_of_request(down)  # in step for the next request
        headers = [*answer.headers, (b"X-Request-ID", self.plan.request_id)]
        content_type = header_value(answer.headers, b"content-type")
        self.queue_head(answer.status, headers, content_type=content_type)
        if answer.body:
            down.queue(h11.Data(data=answer.body))
        down.queue(h11.EndOfMessage())
        self.record.body_bytes_sent = len(answer.body)
        await self.flush_to_client()

    # --- Forward -----------------------------------------------------------------------------

    async def _forward(self) -> None:
        """Forward the request over a pooled upstream connection, retried once on a fresh
        one when a reused one was stale.

        The retry follows nginx and Varnish: only for an idempotent request without a body,
        only when the reused connection ended before any response byte arrived (the error is
        then `UpstreamClosed`: `UpstreamConnection.failure` decides which).
        """
        try:
            await self._forward_on_pooled_connection()
        finally:  # the rate floors are this request's only, however it ends
            self.down.send_floor = self.down.receive_floor = None

    async def _forward_on_pooled_connection(self) -> None:
        pool, plan, record = self.ctx.pool, self.plan, self.record
        if plan.body is not BodyKind.NONE:
            self._start_receive_floor()
        self.body = await buffer_request_body(self.down, plan, self.ctx.settings)
        up, reused, waited = await pool.acquire()
        # Left while we waited? Then the origin never hears of it. (No checkpoint between the
        # acquire and the loop below: a cancellation cannot leak the connection.)
        if waited and self.down.peer_closed():
            pool.give_back(up)
            raise ClientGone(
                "client closed the connection while waiting for an upstream connection"
            )
        while True:
            try:
                await self._send_and_relay_on(up)
            except UpstreamClosed as exc:
                if not (reused and plan.idempotent and plan.body is BodyKind.NONE):
                    raise
                log.info("retrying on a fresh connection: %s", exc, extra=request_fields(record))
                self.ctx.stats.retries += 1
                up, reused = await pool.connect_fresh()
                continue
            # The upstream is done with: back to the pool before the client's last bytes go out.
            pool.release(up)
            await self.flush_to_client()
            return

    async def _send_and_relay_on(self, up: UpstreamConnection) -> None:
        """One attempt on ``up``, which is discarded if it fails. (Its own method: mypyc
        cannot compile the retry loop's `continue` inside a try/finally.)"""
        record = self.record
        self.up = up
        record.upstream_addr = up.address
        started = trio.current_time()
        try:
            await self._send_and_relay()
        except BaseException:
            self.ctx.pool.discard(up)
            raise
        finally:
            self.up = None
            record.upstream_duration_s = trio.current_time() - started

    async def _send_and_relay(self) -> None:
        """The request head and body upstream, the response back (once)."""
        up, plan = self.upstream, self.plan
        # _parsed=True: h11 skips re-validating what its own parser already validated (and the
        # few fields we add are valid by construction): a third of the per-request parse cost.
        up.queue(
            h11.Request(
                method=self.request.method, target=plan.target, headers=plan.headers, _parsed=True
            )
        )
        if self.body is None:
            up.queue(h11.EndOfMessage())
            await up.flush(self.timeouts.upstream_send_s)
            await self._relay_response()
            return
        # A complete response ends the exchange; an unfinished upload is then abandoned (the
        # connections' h11 states forbid reusing either of them).
        upload = partial(upload_body, self.down, up, self.body, self.timeouts)
        await with_side_task(self._relay_response, upload)

    async def _relay_response(self) -> None:
        """The response head, rewritten for the client, then its body; or, after a 101, the
        tunnel."""
        down, up, plan, record, ctx = self.down, self.upstream, self.plan, self.record, self.ctx
        response, received = await read_response_head(
            down,
            up,
            ctx,
            http_version=self.request.http_version,
            watch_client=plan.body is BodyKind.NONE,
        )
        # From here on the client has (queued) bytes: an upstream failure can only abort it.
        if isinstance(response, h11.InformationalResponse):  # 101: the upgrade was accepted
            await self._tunnel(response)
            return
        raw = response.headers.raw_items()
        headers = response_headers(
            raw, response.http_version, rules=ctx.forwarding, request_id=record.request_id
        )
        if plan.edit_response is not None:  # response-header rules
            headers = plan.edit_response(response.status_code, headers)
        record.upstream_status = response.status_code
        record.section_io_tag = header_value(raw, b"section-io-tag")
        self._start_send_floor()
        content_type = header_value(raw, b"content-type")
        self.queue_head(
            response.status_code, headers, reason=response.reason, content_type=content_type
        )
        # Trailers survive only where the downstream framing is chunked too.
        keep_trailers = self.request.http_version != b"1.0" and not header_value(
            headers, b"content-length"
        )
        await relay_body(down, up, record, raw, received, ctx.settings, keep_trailers=keep_trailers)

    async def _tunnel(self, switch: h11.InformationalResponse) -> None:
        """Relay the 101 and splice the two connections; neither is reused afterwards (h11
        leaves both in SWITCHED_PROTOCOL, which the pool and the keep-alive loop refuse).
        A tunnel has no send floor: it idles as long as ``tunnel_idle_s`` allows."""
        up, ctx, timeouts = self.upstream, self.ctx, self.timeouts
        headers = response_headers(
            switch.headers.raw_items(),
            switch.http_version,
            rules=ctx.forwarding,
            request_id=self.record.request_id,
            switching=True,
        )
        self.queue_head(101, headers, reason=switch.reason, validated=False)
        self.record.upstream_status = 101
        ctx.pool.detach(up)
        await self.flush_to_client()
        ctx.stats.tunnels_open += 1
        try:
            await splice(
                self.down,
                up,
                idle_timeout_s=timeouts.tunnel_idle_s,
                fin_timeout_s=timeouts.tunnel_fin_s,
            )
        finally:
            ctx.stats.tunnels_open -= 1

    def _start_receive_floor(self) -> None:
        """From here to the request body's end it must arrive at ``min_body_rate``."""
        limits, down = self.limits, self.down
        if limits.min_body_rate_bytes_per_s:
            down.receive_floor = RateFloor(
                limits.min_body_rate_bytes_per_s,
                self.timeouts.client_body_s,
                trio.current_time(),
                down.bytes_received,
            )

    def _start_send_floor(self) -> None:
        """From here to the response's end the client must take it at ``min_send_rate``."""
        min_rate, down = self.limits.min_send_rate_bytes_per_s, self.down
        if min_rate:
            down.send_floor = RateFloor(
                min_rate, self.timeouts.client_send_s, trio.current_time(), down.bytes_sent
            )

    # --- Error answer, access line -----------------------------------------------------------

    async def _fail(self, exc: ProxyError) -> None:
        record, request = self.record, self.request
        record.request_id = record.request_id or new_request_id()  # a refused plan has none
        log.log(
            logging.WARNING if exc.status >= 500 else logging.INFO,
            "%s %s: %s (%d)",
            request.method.decode("ascii", "replace"),
            request.target.decode("ascii", "replace")[:200],
            exc,
            exc.status,
            extra=request_fields(record, self.ctx.upstream_authority, failure=_failure(exc)),
        )
        await self.answer_error(exc)

    def _access_line(self, started: float, sent_before: int, received_before: int) -> None:
        record, down = self.record, self.down
        record.duration_s = trio.current_time() - started
        settle_bytes(record, sent_before, down.bytes_sent)
        record.bytes_received = down.bytes_received - received_before
        self.ctx.log_access(record)


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


def _failure(exc: ProxyError) -> str:
    # Upstream failures repeat under load: identical ones are aggregated on stderr.
    return f"{exc} ({exc.status})" if exc.status >= 500 else ""
