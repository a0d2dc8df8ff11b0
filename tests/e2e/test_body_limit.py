"""The request body limit through the real CLI: the global key and a rule's, a 413 that closes
the connection before the origin hears of the request, and the access line saying 413."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import trio

from ..cli_support import cli_proxy, wait_for_exit
from ..support import Client, raw_origin, read_head

CONFIG = """
[limits]
max_request_body_bytes = 1000

[[rules]]
match.path_prefix = "/upload/"
max_request_body_bytes = 0
"""


async def test_bodies_over_the_limit_get_413_and_never_reach_the_origin(tmp_path: Path) -> None:
    (tmp_path / "trioproxy.toml").write_text(CONFIG)
    heads: list[bytes] = []

    async def origin_handler(stream: trio.SocketStream) -> None:
        while received := await read_head(stream):
            head, _, body = received.partition(b"\r\n\r\n")
            heads.append(head.split(b"\r\n")[0])
            left = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0]) - len(body)
            while left > 0:  # (one request at a time: nothing past its body)
                left -= len(await stream.receive_some(left))
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    async with raw_origin(origin_handler) as origin:
        async with cli_proxy(origin, config_dir=str(tmp_path)) as proxy:
            async with Client.connect(proxy.address) as client:
                small = await client.request(b"POST", b"/form", body=b"x" * 1000)
                large = await client.request(b"POST", b"/form", body=b"x" * 1001)
            async with Client.connect(proxy.address) as client:
                upload = await client.request(b"POST", b"/upload/file", body=b"x" * 100_000)
            await proxy.wait_for_output(lambda: proxy.stdout.count(b"\n") == 3)
            proxy.process.send_signal(signal.SIGTERM)
            assert await wait_for_exit(proxy.process) == 0
    assert (small.status, large.status, upload.status) == (200, 413, 200)
    assert large.header(b"connection") == b"close"
    assert heads == [b"POST /form HTTP/1.1", b"POST /upload/file HTTP/1.1"]
    lines = [json.loads(line) for line in proxy.stdout.decode().splitlines()]
    assert [(line["path"], line["status"]) for line in lines] == [
        ("/form", "200"),
        ("/form", "413"),
        ("/upload/file", "200"),
    ]
    assert "request body of 1001 bytes by its Content-Length, over the limit of 1000 (413)" in (
        proxy.stderr.decode()
    )
