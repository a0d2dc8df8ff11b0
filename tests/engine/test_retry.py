"""The stale-connection retry: a request is retried once on a fresh connection only when its
reused one died (closed, or reset) before any response byte, and it is idempotent with no
body (nginx's and Varnish's rule); otherwise the client gets a 502 and the origin never sees
the request twice.

From the former e2e/test_promises.py (README promises that mutation testing showed no test
pinned down, on loopback there), the former test_stale_reset.py (a *reset* is judged by what
was received on it), and test_exchange.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import trio
import trio.testing

from ..memnet import MemoryStream, memory_proxy
from ..support import read_head


@dataclass
class StaleOrigin:
    """Loses the keep-alive race: its first connection answers once, then reads the next
    request, sends ``partial`` of a response and hangs up (closes, or with ``reset`` resets
    once the proxy has read it); later connections answer everything. ``answered`` counts
    the answers given on each connection, ``heads`` every request head it read."""

    partial: bytes = b""
    reset: bool = False
    answered: list[int] = field(default_factory=list)
    heads: list[bytes] = field(default_factory=list)

    async def __call__(self, stream: MemoryStream) -> None:
        self.answered.append(0)
        first = len(self.answered) == 1
        while head := await read_head(stream):
            self.heads.append(head)
            if first and self.answered[0]:
                if self.partial:
                    await stream.send_all(self.partial)
                if self.reset:
                    await trio.testing.wait_all_tasks_blocked()
                    stream.reset()
                return
            self.answered[-1] += 1
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


PART_OF_A_HEAD = b"HTTP/1.1 200 OK\r\nContent-Le"

# (method, body, what the origin sends of the second answer before it hangs up, whether it
# resets, the second request's status, the answers given on each connection, retries)
CASES = [
    pytest.param(b"GET", b"", b"", False, 200, [1, 1], 1, id="get-closed-retried-once"),
    pytest.param(b"GET", b"", b"", True, 200, [1, 1], 1, id="get-reset-retried-once"),
    pytest.param(b"POST", b"x", b"", False, 502, [1], 0, id="post-with-a-body-never"),
    # Not idempotent even without a body (`POST /logout`): never a second POST.
    pytest.param(b"POST", b"", b"", False, 502, [1], 0, id="bodyless-post-never"),
    # Bytes came back, so the request may have been acted on.
    pytest.param(b"GET", b"", b"HTTP/1.1 200 OK\r\n", True, 502, [1], 0, id="reset-after-a-line"),
    pytest.param(b"GET", b"", PART_OF_A_HEAD, True, 502, [1], 0, id="reset-mid-head"),
    pytest.param(b"GET", b"", PART_OF_A_HEAD, False, 502, [1], 0, id="closed-mid-head"),
]


@pytest.mark.parametrize(
    ("method", "body", "partial", "reset", "status", "answered", "retries"), CASES
)
async def test_a_dead_reused_connection_is_retried_only_if_idempotent_bodyless_and_unanswered(
    autojump_clock: trio.testing.MockClock,
    method: bytes,
    body: bytes,
    partial: bytes,
    reset: bool,
    status: int,
    answered: list[int],
    retries: int,
) -> None:
    origin = StaleOrigin(partial, reset)
    async with memory_proxy(origin=origin) as proxy:
        async with proxy.client() as client:
            assert (await client.request(b"GET", b"/")).status == 200
            assert (await client.request(method, b"/", body=body)).status == status
    assert origin.answered == answered  # [1, 1]: the second answer came from a fresh connection
    # The request reached the origin, and a second time only if retried.
    assert [head.split(b" ", 1)[0] for head in origin.heads] == [b"GET"] + [method] * (1 + retries)
    assert proxy.server.ctx.stats.retries == retries
    assert [r.status for r in proxy.records] == [200, status]
