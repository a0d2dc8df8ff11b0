"""An error the client caused closes its connection, and the answer says so
(``Connection: close``): the stream may be out of step, so the proxy reads no further
request on it. A head refused before h11 parsed it leaves h11 thinking nothing happened
yet, so only the error's kind can say it: nothing else in the response-head writer would.
"""

from __future__ import annotations

import trio
import trio.testing

from ..memnet import memory_proxy
from ..support import parse_responses


async def test_a_refused_head_gets_its_400_with_connection_close(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory_proxy() as proxy:
        async with proxy.open() as stream:
            await stream.send_all(b"GET / HTTP/1.1\r\nno colon\r\n\r\nGET / HTTP/1.1\r\n")
            received = bytearray()
            with trio.fail_after(100):
                while chunk := await stream.receive_some(65536):
                    received += chunk
    (answer,) = parse_responses(bytes(received))
    assert (answer.status, answer.header(b"connection")) == (400, b"close")
