"""The connection loop reads the usual head (arrived whole, plainly valid) inline, without
`_read_request`: whatever h11 still refuses there is answered and closed as `_read_request`
answers it."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trioproxy.engine import _connection

from ..memnet import memory_proxy

# A compiled module calls its functions directly: a replaced one is not seen.
_COMPILED = not str(_connection.__file__).endswith(".py")


@pytest.mark.skipif(_COMPILED, reason="a compiled module does not see a replaced function")
async def test_a_head_the_fast_check_passes_and_h11_refuses_gets_a_400_and_a_close(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No head h11 refuses passes the fast check today: pretend one does (no Host field).
    monkeypatch.setattr(_connection, "whole_request_head", lambda data, limits: True)
    async with memory_proxy() as proxy:
        with trio.fail_after(10):
            reply = await proxy.exchange_raw(b"GET /x HTTP/1.1\r\nX: y\r\n\r\n")
        await proxy.logged()
    assert reply.startswith(b"HTTP/1.1 400 ")  # and exchange_raw returned: closed
    assert b"connection: close" in reply.lower()
    assert [r.status for r in proxy.records] == [400]
