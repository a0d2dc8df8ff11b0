"""Bodies stream through with backpressure: 1 GiB each way, in bounded proxy memory.

The proxy runs as a real subprocess so its peak RSS (VmHWM) is its own. A proxy that
buffered whole bodies would need over 1 GiB; we allow 64 MiB above its idle size.
"""

from __future__ import annotations

import trio

from ..cli_support import cli_proxy
from ..support import raw_origin, read_head

GIB = 1 << 30
CHUNK = b"\xa5" * (1 << 20)
HEADROOM_KIB = 64 * 1024


async def test_one_gib_download_in_bounded_memory() -> None:
    async def big(stream: trio.SocketStream) -> None:
        await read_head(stream)
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % GIB)
        for _ in range(GIB // len(CHUNK)):
            await stream.send_all(CHUNK)

    async with raw_origin(big) as upstream, cli_proxy(upstream) as proxy:
        idle_kib = proxy.rss_peak_kib()
        stream = await trio.open_tcp_stream(*proxy.address)
        async with stream:
            await stream.send_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            received = 0
            head = b""
            while b"\r\n\r\n" not in head:
                head += await stream.receive_some(65536)
            received = len(head.split(b"\r\n\r\n", 1)[1])
            while received < GIB:
                chunk = await stream.receive_some(1 << 20)
                assert chunk
                received += len(chunk)
        assert received == GIB
        assert proxy.rss_peak_kib() - idle_kib < HEADROOM_KIB


async def test_one_gib_chunked_upload_in_bounded_memory() -> None:
    got = 0

    async def sink(stream: trio.SocketStream) -> None:
        nonlocal got
        import h11

        conn = h11.Connection(h11.SERVER)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(1 << 20))
            elif isinstance(event, h11.Data):
                got += len(event.data)
            elif isinstance(event, h11.EndOfMessage):
                break
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    async with raw_origin(sink) as upstream, cli_proxy(upstream) as proxy:
        idle_kib = proxy.rss_peak_kib()
        stream = await trio.open_tcp_stream(*proxy.address)
        async with stream:
            await stream.send_all(
                b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            chunk = b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK)
            for _ in range(GIB // len(CHUNK)):
                await stream.send_all(chunk)
            await stream.send_all(b"0\r\n\r\n")
            reply = b""
            while not reply.endswith(b"ok"):
                reply += await stream.receive_some(65536)
        assert reply.startswith(b"HTTP/1.1 200 ")
        assert got == GIB
        assert proxy.rss_peak_kib() - idle_kib < HEADROOM_KIB
