"""One request's exchange, from its head to its access line, in named phases.

`Exchange.serve` runs the life of a request whose head `_connection` has read, in this
order:

1. **start**: the access record and the forwarding plan (`core._headers.plan_request`);
2. **rules**: the [[rules]] decide (`core._ruleengine`), then the hooks the matching rules
   name run (`_hooks`): a rule or a hook answers and nothing goes upstream
   (`_answer_from_rules`), or the decision and the hooks shape the plan (`apply_decision`);
3. **forward**: the request body buffered (`_requestbody`), an upstream connection from the
   pool, the request head and body sent, the response head read (`_response`) and written to
   the client, then its body relayed (`_response`) or, after a 101, both connections spliced
   (`_tunnel`); the connection back to the pool, the last bytes flushed to the client. Retried
   once on a fresh connection when a reused one was stale (`serve`);
4. **error answer**: a `ProxyError` on the way gets a short plain-text answer if no response
   head went out yet (`answer_error`);
5. **access line**: always, last (after the hooks' access points, if any ran).

A head that could not be read at all (`reject`) has only the last two.

The seams: every final response head the client gets, from a rule, an error, the origin or a
101, is written by one method (the interim 1xx heads, the proxy's own `100 Continue` and the
origin's relayed 100 and 103, go out where they happen: `_requestbody`, `_response`),
`Responder.queue_head`, which owns the ``Connection: close`` rule and the record's status, body
start and content type. The rate floors are this exchange's alone: set here
(`_start_receive_floor`, `_start_send_floor`) and cleared here when forwarding ends.

Faults (`_faultrun`), chosen with the rules (a rule's `FaultAction`, then the runtime table),
act at those seams: before forwarding (a fault's answer goes through `_answer_from_rules`),
before and after the request head (`_send_and_relay`) and the response head
(`_relay_response`), and in either body under the peer's wire (`FaultyTransport`, restored
when forwarding ends). An exchange without faults has ``faults`` None and never goes there.

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
from collections.abc import Awaitable, Coroutine
from functools import partial
from typing import TYPE_CHECKING

import trio

from ..config._settings import Limits, Timeouts
from ..core._accesslog import AccessRecord, ExchangeNotes, settle_bytes
from ..core._answers import text_response
from ..core._bodylimit import BodyTooLarge
from ..core._errors import ClientError, ClientGone, ProxyError, UpstreamClosed
from ..core._faults import Direction, FaultState
from ..core._headers import (
    NOTED_AS_IS,
    TEXT_PLAIN,
    BodyKind,
    Field,
    Headers,
    RequestPlan,
    header_value,
    plan_request_of,
    reason_phrase,
    response_fields_of,
    response_headers,
)
from ..core._headreader import whole_response_head
from ..core._requestview import RequestView, ViewSource, request_view, view_of
from ..core._ruleengine import HEALTH_CHECK_PREFIX, PASS, Decision, Triggered, apply_decision
from ..core._rulemodel import HookAction, Response
from ..core._tracecontext import trace_ids_of
from ._context import ProxyContext
from ._diagnostics import describe_decision, request_fields
from ._faultrun import FaultClosed, FaultRun, pause, read_whole
from ._h11 import END_OF_MESSAGE, Fields, fields_of, h11, sendable
from ._peer import Downstream, UpstreamConnection, server_h11
from ._race import with_side_task
from ._requestbody import (
    RequestBody,
    buffer_request_body,
    expect_end_of_request,
    keep_prefix,
    not_the_end,
    upload_body,
)
from ._response import (
    WATCH_CLIENT_AFTER_S,
    invalid_head,
    invalid_response,
    read_response_head,
    relay_body,
    unexpected_event,
)
from ._slices import move_data
from ._tunnel import splice

if TYPE_CHECKING:
    from ._hooks import HookCalls

log = logging.getLogger("trioproxy")

# (Modules' names, not h11's or BodyKind's attributes: read for every request.)
_END = h11.EndOfMessage
_RESPONSE = h11.Response
_INFORMATIONAL = h11.InformationalResponse
_SEND_BODY = h11.SEND_BODY
_NO_BODY = BodyKind.NONE

# nginx's convention for the access log: the client closed the connection before a
# response status went out. Never sent on the wire.
CLIENT_CLOSED_REQUEST = 499
# nginx's "closed the connection without a response" (its `return 444`): a fault did.
FAULT_CLOSED = 444


async def reject(down: Downstream, ctx: ProxyContext, exc: ClientError) -> None:
    """Answer a request head we could not read, log it, and leave the connection to close."""
    record = AccessRecord(start_wall=time.time(), peer=down.peer_ip, status=exc.status)
    record.request_id = ctx.new_request_id()  # for the line, the answer and the access log
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

    __slots__ = ("ctx", "down", "head_at", "record")

    def __init__(self, down: Downstream, ctx: ProxyContext, record: AccessRecord) -> None:
        self.down = down
        self.ctx = ctx  # the configuration current when the request started
        self.record = record
        self.head_at = -1  # the connection's byte count where the final head starts, once queued

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
        headers: Headers | None,
        *,
        reason: bytes = b"",
        content_type: bytes = b"",
        close: bool = False,
        validated: bool = True,
        lowered: list[Field] | None = None,
    ) -> None:
        """Queue the response head: the only place one is written (a rule's answer, an error
        answer, the origin's response, a 101). ``Connection: close`` is added when this is
        the connection's last response (or ``close``: the stream may be out of sync); the
        record takes the status, where the body starts and its content type.

        ``validated``: every field is known valid, so h11 sends them without checking them
        again (`sendable`). Where they come from, and who checked them: the origin's fields
        (h11's parser, then `core._strict`'s head checks; `response_fields` only drops some
        and adds constants, our X-Request-ID (`plan_request`: the client's only if it is a
        plain ID, else hex digits) and Via (a token, checked at load)); the rules' answers
        and response-header edits (config validation: names are tokens, values have no
        control character nor outer whitespace, no framing or hop-by-hop name; a redirect's
        Location is visible ASCII: its literal parts are checked at load, its variables are
        the cleaned host and the target h11 checked); a hook's edits and answers
        (`hooks._api`: the same checks, when the hook asks); the text answers' framing
        (`text_response`: digits). Content-Length and Transfer-Encoding come only from h11
        (normalised) or from us. Anything else (an error answer's fields, the 101's, a
        hook's replacement of the origin's response: all rare) is ``validated=False``,
        and h11 checks it. ``lowered``: the same ``headers`` with their lower-case names
        (`response_fields_of`), sent as they are; ``headers`` is then None where nothing
        read them (made here for the journal alone)."""
        down, record = self.down, self.record
        record.content_type = content_type
        if status == 101:  # the connection switches protocols: no keep-alive to end
            assert headers is not None  # (`_tunnel`'s)
            head: h11.Response | h11.InformationalResponse = h11.InformationalResponse(
                status_code=101,
                headers=sendable(headers) if validated else headers,
                reason=reason,
                _parsed=validated,
            )
        else:
            # (`last_on_connection`, inline: this runs for every response)
            if (
                close
                or self.ctx.shared.draining
                or down.closing
                or down.h11.their_state is _SEND_BODY
            ):
                if headers is not None:
                    headers.append((b"Connection", b"close"))
                if lowered is not None:
                    lowered.append((b"Connection", b"connection", b"close"))
            head = _RESPONSE(
                status_code=status,
                # (`lowered` comes only with known-valid fields: the origin's.)
                headers=(
                    Fields(lowered)
                    if lowered is not None
                    else sendable(headers or [])
                    if validated
                    else headers or []
                ),
                reason=reason or reason_phrase(status, b""),  # (origins nearly always give one)
                _parsed=validated,
            )
        self.head_at = head_at = down.bytes_sent + down.queued_bytes
        record.body_start = head_at + down.queue_sized(head)
        record.status = status
        if record.notes is not None:
            if headers is None:  # (the same fields, as pairs: for the journal alone)
                headers = [(n, v) for n, _, v in lowered or ()]
            record.notes.response_headers = headers
            record.notes.first_byte_s = down.clock.current_time()

    async def answer_error(self, exc: ProxyError) -> None:
        """A short plain-text answer, if no response head went out yet. Client errors close
        the connection (the stream may be out of sync); upstream errors keep it if the
        request was read whole."""
        down, record = self.down, self.record
        if down.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE) or down.has_queued:
            return
        record.status = exc.status
        answer = text_response(exc.status)  # "502 Bad Gateway\n", with its framing fields
        headers = [*answer.headers, (b"X-Request-ID", record.request_id), *exc.headers]
        try:
            self.queue_head(
                exc.status,
                headers,
                content_type=TEXT_PLAIN,
                close=isinstance(exc, ClientError),
                validated=False,
            )
            head_only = record.method == b"HEAD"  # (h11 refuses a body on a HEAD's answer)
            record.body_bytes_sent = 0 if head_only else len(answer.body)
            if not head_only:
                down.queue(h11.Data(data=answer.body))
            down.queue(END_OF_MESSAGE)
        except ProxyError:  # h11 will not send it in this state: the connection just closes
            return
        await self.flush_to_client()

    def flush_to_client(self) -> Awaitable[object]:
        # Not a coroutine itself: one frame less to resume at every wait of the flush.
        return self.down.flush(self.ctx.settings.timeouts.client_send_s)


class Exchange(Responder):
    """One request's life, and the state that travels with it: the request and its plan,
    the upstream connection while one is held, the body on its way."""

    __slots__ = ("body", "delay_s", "faults", "hooks", "plan", "request", "up")

    plan: RequestPlan  # made by the first phase (start, in `serve`)

    def __init__(self, down: Downstream, ctx: ProxyContext, request: h11.Request) -> None:
        # start_wall, peer, method, target, http_version: positional, as a keyword call
        # through the class costs a dict and half the construction again (~0.5 us).
        record = AccessRecord(
            time.time(), down.peer_ip, request.method, request.target, request.http_version
        )
        if ctx.shared.journal:
            record.notes = ExchangeNotes(request.headers.raw_items())
        # (Responder's fields set here, not through its __init__: one call less per request.)
        self.down = down
        self.ctx = ctx
        self.record = record
        self.head_at = -1
        self.request = request
        self.up: UpstreamConnection | None = None  # while one is held
        self.body: RequestBody | None = None  # a request body still to send upstream
        self.faults: FaultRun | None = None  # faults selected for this exchange, if any
        self.delay_s = 0.0  # a latency fault's, once the upstream connection is back
        self.hooks: HookCalls | None = None  # the hooks the rules triggered, once run

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
        """The phases, in order: start, rules, answer or forward, error answer, access line.

        Forward: the request over a pooled upstream connection, retried once on a fresh one
        when a reused one was stale. The retry follows nginx and Varnish: only for an
        idempotent request without a body, only when the reused connection ended before any
        response byte arrived (the error is then `UpstreamClosed`:
        `UpstreamConnection.failure` decides which). (Inline, not a coroutine of its own:
        every frame of the chain is resumed at every wait of the request.)
        """
        down, record, ctx = self.down, self.record, self.ctx
        started = down.clock.current_time()  # (the same clock as `_access_line`'s)
        sent_before = down.bytes_sent
        try:
            # Start: the forwarding plan (it may refuse the request), and what the record
            # notes of it. (Inline: one call less a request.)
            request = self.request
            self.plan = plan = plan_request_of(
                request.method,
                request.target,
                fields_of(request.headers),  # (h11's own: names lower-cased already)
                request.http_version,
                peer_ip=down.peer_ip.encode("ascii"),
                rules=ctx.forwarding,
                upstream_authority=ctx.upstream_authority,
                max_header_count=ctx.settings.limits.max_header_count,
                make_request_id=ctx.new_request_id,
            )
            _note_request(record, plan)
            # The exchange's reading, which the upstream's duration starts from if no
            # checkpoint came in between (None: one did, the clock is read again).
            asked_at: float | None = started
            if ctx.rule_engine.has_rules or ctx.shared.faults.has_faults:
                if await self._rules():
                    return  # a rule (or a fault) answered
                if self.hooks is not None or self.faults is not None:
                    asked_at = None  # (hooks and faults may have waited)
            try:
                pool, timeouts = ctx.pool, ctx.settings.timeouts
                no_body = plan.body is _NO_BODY
                if no_body:
                    # (`buffer_request_body`'s first step, the only one for most requests: no
                    # coroutine made for it; `expect_end_of_request`, inline: no call either.)
                    if not isinstance(event := down.h11.next_event(), _END):
                        raise not_the_end(event)
                else:
                    self._start_receive_floor()
                    self.body = await buffer_request_body(down, plan, ctx.settings)
                    if self.body is not None and record.notes is not None:
                        keep_prefix(self.body, record.notes, ctx.shared.journal_body_bytes)
                    asked_at = None  # (the body took checkpoints: the clock is read again)
                # (An idle connection, the usual case, taken with no coroutine made.)
                up = pool.reuse(asked_at)
                if up is None:
                    up, reused, waited = await pool.acquire(asked_at)
                else:
                    reused, waited = True, False
                # Left while we waited? Then the origin never hears of it. (No checkpoint
                # between the acquire and the loop below: a cancellation cannot leak the
                # connection.)
                if waited and down.peer_closed():
                    pool.give_back(up)
                    raise ClientGone(
                        "client closed the connection while waiting for an upstream connection"
                    )
                # The exchange's reading still says when the origin was asked, unless a body,
                # a wait for a slot or a new connection's connect came in between.
                if asked_at is None or waited or not reused:
                    asked_at = up.clock.current_time()
                while True:
                    self.up = up
                    record.upstream_addr = up.address
                    if record.notes is not None:
                        record.notes.upstream_reused = reused
                    try:
                        if self.body is None and self.faults is None:
                            # (`_send_and_relay`'s plain case, inline: one coroutine frame
                            # less to resume at every wait of the response.)
                            # (`_queue_request_head`, inline: its fields are known valid
                            # for the reasons it gives.)
                            if record.notes is not None:
                                record.notes.forwarded_target = plan.target
                                record.notes.forwarded_headers = plan.headers
                            await up.send_message(
                                h11.Request(
                                    method=request.method,
                                    target=plan.target,
                                    headers=Fields(plan.fields),
                                    _parsed=True,
                                ),
                                timeouts.upstream_send_s,
                            )
                            # (`_relay_response`'s two halves, awaited here: one coroutine
                            # frame less to resume at every wait of the response head.) The
                            # usual head, inline (no coroutine made for it): there already
                            # (read at once, as `read_response_head` first reads when it
                            # watches the client), whole, plainly valid and final; anything
                            # else `read_response_head` reads, from what was read here.
                            tried = no_body and timeouts.upstream_response_s > WATCH_CLIENT_AFTER_S
                            ready = await up.recv_if_ready() if tried else None
                            response: h11.Response | h11.InformationalResponse
                            if (
                                ready
                                and (end := whole_response_head(ready, ctx.settings.limits)) >= 0
                                and ready[9] != 0x31  # (not a 1xx: b"HTTP/1.1 1")
                            ):
                                conn = up.h11
                                conn.receive_data(ready)
                                try:
                                    event = conn.next_event()
                                except h11.RemoteProtocolError as exc:
                                    raise invalid_head(up, exc) from exc
                                if not isinstance(event, _RESPONSE):
                                    raise unexpected_event(up, event)
                                response, received = event, bytearray(ready[end:])
                            else:
                                response, received = await read_response_head(
                                    down,
                                    up,
                                    ctx,
                                    http_version=request.http_version,
                                    watch_client=no_body,
                                    tried=tried,
                                    first=ready,
                                )
                            await self._relay_from_head(response, received, up)
                        else:
                            await self._send_and_relay()
                    except UpstreamClosed as exc:
                        pool.discard(up)
                        if not (reused and plan.idempotent and no_body):
                            raise
                        log.info(
                            "retrying on a fresh connection: %s", exc, extra=request_fields(record)
                        )
                        ctx.stats.retries += 1
                        up, reused = await pool.connect_fresh()
                        asked_at = up.clock.current_time()
                        continue
                    except BaseException:
                        pool.discard(up)
                        raise
                    finally:
                        self.up = None
                        ended = up.clock.current_time()
                        record.upstream_duration_s = ended - asked_at
                    break
                # The upstream is done with: back to the pool before any wait for the client
                # (at that reading of the clock: no checkpoint since).
                if self.delay_s:
                    pool.release(up, ended)
                    await self._delay_response()
                    await down.flush(timeouts.client_send_s)  # (`flush_to_client`, inline)
                else:
                    # The client's bytes first, when they go at once (`flush` writes before
                    # it returns what to await): the pool's bookkeeping is then off the
                    # response's way, and still done before the flush can wait.
                    try:
                        flushed = down.flush(timeouts.client_send_s)
                    finally:
                        pool.release(up, ended)
                    await flushed
            finally:  # the rate floors are this request's only, however it ends
                down.send_floor = down.receive_floor = None
                if self.faults is not None:
                    FaultRun.restore(down)
            if self.faults is not None and self.faults.close_after():
                down.closing = True  # though the response did not say Connection: close
        except ProxyError as exc:
            await self._fail(exc)
        except ClientGone as exc:
            if not record.status:
                record.status = (
                    FAULT_CLOSED if isinstance(exc, FaultClosed) else CLIENT_CLOSED_REQUEST
                )
            raise
        finally:
            if self.hooks is None:
                self._access_line(started, sent_before, received_before)
            else:
                try:  # their access points add fields to the line
                    await self.hooks.on_access(record)
                finally:
                    self.hooks.release()
                    self._access_line(started, sent_before, received_before)

    # --- Start, rules ------------------------------------------------------------------------

    def received_view(self) -> RequestView:
        """The rules' view of the request as received, for a hook or a runtime fault that
        reads it where the rules needed none (`_rules` hands this exchange out as the view's
        source only when the plan's target is the one received: origin-form)."""
        request = self.request
        return request_view(
            request.method,
            request.target,
            request.headers.raw_items(),
            self.down.peer_ip,
            peer_trusted=self.plan.peer_trusted,
        )

    async def _rules(self) -> bool:
        """Let the [[rules]] decide; True if one answered (nothing goes upstream), else the
        plan now says what the decision does to the request."""
        request, plan, ctx = self.request, self.plan, self.ctx
        engine = ctx.rule_engine
        # Conditions see the client's own headers, not our X-Forwarded-For or Via. Rules that
        # test nothing decide without looking (`RuleEngine.constant`): a view is then made
        # only if a runtime fault or a hook reads the request (`received_view`).
        view: RequestView | ViewSource
        decision = engine.constant(plan.target)
        if decision is not None and plan.target is request.target:  # (not absolute-form)
            view = self  # (nothing made: most hooks never read the request)
        else:
            view = request_view(
                request.method,
                plan.target,
                request.headers.raw_items(),
                self.down.peer_ip,
                peer_trusted=plan.peer_trusted,
            )
            if decision is None:
                decision = engine.evaluate(view, trio.current_time() if engine.clocked else 0.0)
        if log.isEnabledFor(logging.DEBUG):  # (its fields are a dict made per request)
            log.debug("rules: %s", describe_decision(decision), extra=request_fields(self.record))
        if self.record.notes is not None and (decision.actions or decision.rule):
            _note_rules(self.record.notes, decision)
        answer = decision.response
        if decision.actions and ctx.hooks is not None:
            # The hooks' request points: the answer that ends the request (a hook's, an
            # on_error status, or the rules' own), else None. (Here, not in a method: one
            # coroutine less per hooked request.)
            answer, self.hooks = await ctx.hooks.on_request(decision, view, plan.request_id)
            if answer is not None and decision.response is None:  # a hook's own answer
                headers = decision.response_headers(answer.status, answer.headers)
                answer = Response(answer.status, tuple(headers), answer.body)
        if answer is None:
            if (  # (most decisions change nothing: no call)
                decision is not PASS
                and decision is not engine.constant_keeps_plan  # (a hook on every request)
                and (
                    decision.target is not None
                    or decision.request_ops
                    or decision.response_edits
                    or decision.max_request_body_bytes is not None
                )
            ):
                apply_decision(plan, decision)
            if self.hooks is not None:  # the hooks' edits, after the rules'
                self.hooks.edit_request(plan)
            faults = _fault_states(decision.actions) if engine.has_fault_actions else ()
            if ctx.shared.faults.has_faults:
                view = view_of(view)
                if not view.path.startswith(HEALTH_CHECK_PREFIX):
                    faults += ctx.shared.faults.select(view)
            if not faults:
                return False
            self.faults = FaultRun(faults)
            self.record.faults = self.faults.labels
            return await self._faults_before_forwarding(self.faults)
        await self._answer_from_rules(answer)
        return True

    async def _faults_before_forwarding(self, faults: FaultRun) -> bool:
        """A fault's own answer instead of the origin's (True), or its 1xx first."""
        answer = faults.answer()
        if answer is not None:
            await self._answer_from_rules(answer)
            return True
        await faults.before_forwarding(self.down, self.timeouts.client_send_s)
        return False

    async def _answer_from_rules(self, answer: Response) -> None:
        """A rule answers (redirect, deny, static response, 429): nothing goes upstream."""
        down = self.down
        if self.plan.body is BodyKind.NONE:
            expect_end_of_request(down)  # in step for the next request
        self._queue_answer(answer)
        await self.flush_to_client()

    def _queue_answer(self, answer: Response, *, validated: bool = True) -> None:
        """A whole answer made by the proxy (a rule's or a hook's): head, body, end. A HEAD
        request gets the head alone (its Content-Length stays the GET's)."""
        down = self.down
        headers = [*answer.headers, (b"X-Request-ID", self.plan.request_id)]
        if self.hooks is not None:  # their response-header edits apply to any answer
            headers = self.hooks.response_headers(headers)
        content_type = header_value(answer.headers, b"content-type")
        self.queue_head(answer.status, headers, content_type=content_type, validated=validated)
        body = b"" if self.request.method == b"HEAD" else answer.body
        if body:
            down.queue(h11.Data(data=body))
        down.queue(END_OF_MESSAGE)
        self.record.body_bytes_sent = len(body)

    # --- Forward (the rest of it: the plain case is in `serve`) ---------------------------

    async def _send_and_relay(self) -> None:
        """The request head and body upstream, the response back (once)."""
        up, plan, faults = self.upstream, self.plan, self.faults
        fields, transform = plan.fields, None
        if self.hooks is not None and self.body is not None:
            transform = self.hooks.body_transform("request_body")
            if transform is not None:
                fields = _chunked(fields)  # the hooks decide the body's length
        if faults is not None:
            await faults.before_head(Direction.ORIGIN, self.down, up)
        self._queue_request_head(fields, up)
        try:
            if faults is not None:
                await faults.after_head(
                    Direction.ORIGIN, self.down, up, self.timeouts.upstream_send_s
                )
            if self.body is None:
                up.queue(END_OF_MESSAGE)
                await up.flush(self.ctx.settings.timeouts.upstream_send_s)
                await self._relay_response()
                return
            # A complete response ends the exchange; an unfinished upload is then abandoned
            # (the connections' h11 states forbid reusing either of them).
            upload = partial(upload_body, self.down, up, self.body, self.timeouts, transform)
            await with_side_task(self._relay_response, upload)
        finally:
            if faults is not None:
                FaultRun.restore(up)

    def _queue_request_head(self, fields: list[Field], up: UpstreamConnection) -> None:
        plan = self.plan
        # Sent as known valid (`sendable`'s contract), the plan's fields as they are: the
        # client's fields as h11's parser (which lower-cased their names) and our strict head
        # checks passed them, less the hop-by-hop ones; the ones `plan_request` adds
        # (Host: the target's authority h11 checked, or the upstream address, checked there;
        # X-Request-ID: the client's if a plain ID, else hex; X-Forwarded-For: the client's
        # values and the peer's address; Via: a token checked at load; constants); the rules'
        # and the hooks' edits (checked at load, and by `hooks._api` when a hook asks: tokens,
        # no control character nor outer whitespace, never a framing or hop-by-hop field,
        # Host only set). h11 still checks the method, the target and the one Host.
        up.queue(
            h11.Request(
                method=self.request.method,
                target=plan.target,
                headers=Fields(fields),
                _parsed=True,
            )
        )
        if self.record.notes is not None:
            self.record.notes.forwarded_target = plan.target
            self.record.notes.forwarded_headers = [(name, value) for name, _, value in fields]

    async def _relay_response(self) -> None:
        """The response head, rewritten for the client, then its body; or, after a 101, the
        tunnel."""
        response, received = await self._read_response_head()
        await self._relay_from_head(response, received, self.upstream)

    def _read_response_head(
        self,
    ) -> Coroutine[None, None, tuple[h11.Response | h11.InformationalResponse, bytearray]]:
        # Not a coroutine itself: one frame less to resume at every wait of the head.
        return read_response_head(
            self.down,
            self.upstream,
            self.ctx,
            http_version=self.request.http_version,
            watch_client=self.plan.body is BodyKind.NONE,
        )

    async def _relay_from_head(
        self,
        response: h11.Response | h11.InformationalResponse,
        received: bytearray,
        up: UpstreamConnection,
    ) -> None:
        """`_relay_response` once the head is read (``received``: the bytes past it) from
        ``up``, the upstream connection held."""
        down, record, ctx = self.down, self.record, self.ctx
        # From here on the client has (queued) bytes: an upstream failure can only abort it.
        if isinstance(response, _INFORMATIONAL):  # 101: the upgrade was accepted
            await self._tunnel(response)
            return
        if record.notes is not None:
            record.notes.upstream_headers = response.headers.raw_items()
        # (One pass over the origin's fields gives the client's and what the record takes.)
        fields = response_fields_of(
            fields_of(response.headers),
            response.http_version,
            rules=ctx.forwarding,
            request_id=record.request_id,
        )
        # The (name, value) pairs only for a rule or a hook (`fields.headers`, made when first
        # read): most responses go out as h11's triples, `fields.lowered`.
        headers = None
        if self.plan.edit_response is not None:  # response-header rules
            headers = self.plan.edit_response(response.status_code, fields.headers)
        record.upstream_status = response.status_code
        transform = None
        if self.hooks is not None:  # their response points: edit the head, or replace it
            replacement, headers = await self.hooks.on_response(
                response.status_code, fields.headers if headers is None else headers
            )
            if replacement is not None:
                # The origin's body is left unread: its connection is not reused
                # (`UpstreamConnection.reusable`), and the answer is flushed on return.
                self._queue_answer(replacement, validated=False)
                return
            if _has_body(self.request.method, response.status_code):
                transform = self.hooks.body_transform("response_body")
                if transform is not None and headers is not None:  # (the hooks' headers)
                    # The hook decides the length: h11 frames it.
                    headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
        record.section_io_tag = fields.section_io_tag
        faults = self.faults
        if faults is None:
            # (`_start_send_floor`, inline: nearly every response passes here.)
            settings = ctx.settings
            if min_rate := settings.limits.min_send_rate_bytes_per_s:
                down.send_floor = (
                    down.clock.current_time() + settings.timeouts.client_send_s,
                    down.bytes_sent,
                    min_rate,
                )
        else:
            await self._faults_before_head(faults, response, received)
            if not faults.paces(Direction.CLIENT):
                self._start_send_floor()
        self.queue_head(
            response.status_code,
            headers,
            reason=response.reason,
            content_type=fields.content_type,
            # (As h11 parsed them where no rule or hook changed them.)
            lowered=fields.lowered if headers is None or headers is fields.headers else None,
        )
        if faults is not None:
            await faults.after_head(
                Direction.CLIENT, down, down, self.timeouts.client_send_s, self._let_go_upstream
            )
        if transform is None and not fields.chunked:
            # Most bodies are in h11's buffer whole by now, read with the head: relayed here,
            # with no coroutine of `relay_body`'s to make. (Chunked ones are checked first;
            # the end of any other has no trailers.)
            try:  # (`relay_slice`, inline: one call less a response)
                event, moved = move_data(up, down)
            except h11.RemoteProtocolError as exc:
                raise invalid_response(up, exc) from exc
            record.body_bytes_sent += moved
            if type(event) is _END:
                down.queue(END_OF_MESSAGE)
                return
            if event is None:  # a slice moved: let others run before the next
                await trio.lowlevel.checkpoint()
            elif event is not h11.NEED_DATA:  # (which relay_body's first slice finds again)
                raise unexpected_event(up, event)
        # Trailers survive only where the downstream framing is chunked too.
        has_length = fields.has_length
        if headers is not None:  # (a rule or a hook may have changed it)
            has_length = bool(header_value(headers, b"content-length"))
        keep_trailers = self.request.http_version != b"1.0" and not has_length
        await relay_body(
            down,
            up,
            record,
            response.headers.raw_items(),  # (a list made only for a body that streams)
            received,
            ctx.settings,
            chunked=fields.chunked,
            keep_trailers=keep_trailers,
            transform=transform,
        )

    async def _faults_before_head(
        self, faults: FaultRun, response: h11.Response, received: bytearray
    ) -> None:
        """A latency alone at the head waits until the response, read whole, is queued and
        its upstream connection back in the pool (`_delay_response`): a delayed client holds
        no connection under ``upstream.max_connections``. A response over
        ``response_buffer_bytes`` waits here, holding it, as it will while it streams."""
        delay_s = faults.head_delay_s(Direction.CLIENT)
        if delay_s is not None:
            whole = await read_whole(
                self.upstream,
                response,
                received,
                method=self.request.method,
                limit=self.limits.response_buffer_bytes,
                timeout_s=self.timeouts.upstream_read_s,
            )
            if whole:  # (the relay then reads and sends nothing more)
                self.delay_s = delay_s
            else:
                await pause(self.down, delay_s)
            return
        await faults.before_head(Direction.CLIENT, self.down, self.down, self._let_go_upstream)

    async def _delay_response(self) -> None:
        """The latency of `_faults_before_head`, before anything of the response goes out
        (a client that leaves meanwhile got nothing: logged as such); the send floor then
        starts afresh."""
        try:
            await pause(self.down, self.delay_s)
        except FaultClosed:
            self.record.status = FAULT_CLOSED
            raise
        if self.down.send_floor is not None:
            self._start_send_floor()

    def _let_go_upstream(self) -> None:
        """A fault hangs this exchange's response: nothing more is relayed, so its upstream
        connection is closed and no longer counted, not held for as long as the hang (the
        exchange's end then discards it as usual)."""
        up = self.upstream
        self.ctx.pool.detach(up)
        up.close()

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
            down.receive_floor = (
                down.clock.current_time() + self.timeouts.client_body_s,
                down.bytes_received,
                limits.min_body_rate_bytes_per_s,
            )

    def _start_send_floor(self) -> None:
        """From here to the response's end the client must take it at ``min_send_rate``."""
        settings, down = self.ctx.settings, self.down  # (not the properties: every response)
        min_rate = settings.limits.min_send_rate_bytes_per_s
        if min_rate:
            down.send_floor = (
                down.clock.current_time() + settings.timeouts.client_send_s,
                down.bytes_sent,
                min_rate,
            )

    # --- Error answer, access line -----------------------------------------------------------

    async def _fail(self, exc: ProxyError) -> None:
        record, request = self.record, self.request
        if isinstance(exc, BodyTooLarge):  # a 413, or a response cut short (_requestbody)
            self.ctx.stats.bodies_too_large += 1
        # (a refused plan has none)
        record.request_id = record.request_id or self.ctx.new_request_id()
        log.log(
            logging.WARNING if exc.status >= 500 else logging.INFO,
            "%s %s: %s (%d)",
            request.method.decode("ascii", "replace"),
            request.target.decode("ascii", "replace")[:200],
            exc,
            exc.status,
            extra=request_fields(record, self.ctx.upstream_authority, failure=_failure(exc)),
        )
        if self.down.bytes_sent < record.body_start:  # no final status reached the client
            record.status = exc.status  # (not the origin's: it is taken back, or cut)
        self._take_back_unsent()
        await self.answer_error(exc)

    def _take_back_unsent(self) -> None:
        """Take back a response none of whose bytes have left (read whole into the buffer,
        then found bad: a framing field in its trailers), so that the client gets the error
        answer instead of nothing. h11 cannot take back a head it was given: the connection
        gets a fresh machine at the same point of the cycle (this request read, no response
        begun; bytes pipelined after it kept). Not if any of it left. A 1xx that left before
        it is no part of it (RFC 9110 15.2): the error answer follows it as the final
        response. A request whose body was not read whole (the origin answered early) gets
        a stand-in whose body never ends either: the answer says close, and the connection
        lingers, reading and dropping the rest, as after any early answer."""
        down, request = self.down, self.request
        old = down.h11
        if (
            (old.our_state in (h11.IDLE, h11.SEND_RESPONSE) and not down.has_queued)  # no need
            or down.bytes_sent != self.head_at  # some of it left (or no final head queued)
            or old.their_state not in (h11.DONE, h11.MUST_CLOSE, h11.SEND_BODY)
        ):
            return
        down.discard_queued()
        fresh = server_h11(self.limits)
        # The stand-in keeps what decides keep-alive: the version, and the client's Connection.
        stand_in = b"%s / HTTP/%s\r\nHost: x\r\n" % (request.method, request.http_version)
        for name, value in request.headers.raw_items():
            if name.lower() == b"connection":
                stand_in += b"Connection: %s\r\n" % value
        if old.their_state is h11.SEND_BODY:  # (what h11 holds of the body is dropped)
            fresh.receive_data(stand_in + b"Content-Length: 1\r\n\r\n")
            fresh.next_event()  # the stand-in request: the machine waits for its body
            down.h11 = fresh
            return
        # (Not closed: a client's end of file before its request was whole ended the exchange
        # with ClientGone before any response was read.)
        pipelined, _ = old.trailing_data
        fresh.receive_data(stand_in + b"\r\n" + pipelined)
        fresh.next_event()  # the stand-in request,
        fresh.next_event()  # and its end: the machine now waits for our response
        down.h11 = fresh

    def _access_line(self, started: float, sent_before: int, received_before: int) -> None:
        record, down = self.record, self.down
        record.duration_s = down.clock.current_time() - started
        sent_now, start = down.bytes_sent, record.body_start
        # (`settle_bytes`' answer for the usual response, inline: its head and whole body
        # written. Any other count takes its way.)
        if start >= 0 and sent_now - start == record.body_bytes_sent >= 0:
            record.bytes_sent = sent_now - sent_before
        else:
            settle_bytes(record, sent_before, sent_now)
        record.bytes_received = down.bytes_received - received_before
        self.ctx.log_access(record)


def _has_body(method: bytes, status: int) -> bool:
    return method != b"HEAD" and status not in (204, 304)


def _chunked(fields: list[Field]) -> list[Field]:
    """A request's fields re-framed as chunked: its body's length is the hooks' to decide."""
    kept = [item for item in fields if item[1] not in (b"content-length", b"transfer-encoding")]
    return [*kept, (b"Transfer-Encoding", b"transfer-encoding", b"chunked")]


def _note_rules(notes: ExchangeNotes, decision: Decision) -> None:
    """For the journal: the rules whose answer or actions applied, and the hooks run."""
    triggered = decision.actions
    rules = dict.fromkeys((*(t.rule for t in triggered), *filter(None, [decision.rule])))
    notes.rules = tuple(rules)
    notes.hooks = tuple(t.action.label for t in triggered if isinstance(t.action, HookAction))


def _fault_states(actions: tuple[Triggered, ...]) -> tuple[FaultState, ...]:
    found: tuple[FaultState, ...] = ()
    for triggered in actions:  # (a loop: no generator made for a hook rule's actions)
        if triggered.fault is not None:
            found += (triggered.fault,)
    return found


_NONE_NOTED = (b"",) * len(NOTED_AS_IS)


def _note_request(record: AccessRecord, plan: RequestPlan) -> None:
    noted = plan.noted
    record.host = plan.host
    record.request_id = plan.request_id
    if not noted:  # (none of them: the record's defaults are right)
        return
    # (Looked up in C, all at once: a statement per header cost ~8 opcodes each.)
    (
        record.referrer,
        record.user_agent,
        record.x_forwarded_proto,
        record.x_forwarded_for,
        record.true_client_ip,
        record.section_io_id,
    ) = map(noted.get, NOTED_AS_IS, _NONE_NOTED)
    if b"traceparent" in noted:  # W3C trace context: the access line joins the trace
        record.trace_id, record.span_id = trace_ids_of(plan.fields) or (b"", b"")


def _failure(exc: ProxyError) -> str:
    # Upstream failures repeat under load: identical ones are aggregated on stderr.
    return f"{exc} ({exc.status})" if exc.status >= 500 else ""
