"""What a slowloris costs: RSS per connection holding a partial request head.

    .venv/bin/python bench/partial_heads.py [--connections 1000] [--head-bytes 61000]

Starts trioproxy (defaults: 64 KiB head limit, 10 s head deadline), opens N connections that
each send ``--head-bytes`` of an unfinished request head, and reads the proxy's RSS before and
after, once the proxy has read every byte (its RSS stops growing). The isolation
target: at most 1.25 x the bytes held per connection.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._procs import ProcessRegistry, free_port, rss_kib


async def hold_heads(address: tuple[str, int], count: int, head_bytes: int, pid: int) -> int:
    """Open the connections, send the partial heads, and return the settled RSS (KiB)."""
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * head_bytes
    head = head[:head_bytes]
    streams = []
    try:
        for _ in range(count):
            stream = await trio.open_tcp_stream(*address)
            await stream.send_all(head)
            streams.append(stream)
        last, settled_for = -1, 0
        while settled_for < 5:  # RSS unchanged over 5 looks (0.5 s): all is read
            await trio.sleep(0.1)
            now = rss_kib(pid) or 0
            settled_for = settled_for + 1 if now == last else 0
            last = now
        return last
    finally:
        for stream in streams:
            await stream.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--head-bytes", type=int, default=61000)
    args = parser.parse_args()
    registry = ProcessRegistry()
    try:
        config = tempfile.mkdtemp(prefix="heads-")
        proxy = registry.spawn(
            "trioproxy",
            [
                sys.executable,
                "-m",
                "trioproxy",
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                f"127.0.0.1:{free_port()}",
                "--config-dir",
                config,
            ],
            cpus=None,
        )
        ready = proxy.wait_for_line(re.compile(r"listening on 127\.0\.0\.1:(\d+)"), 20)
        if ready is None:
            print("trioproxy did not start:", *proxy.stderr_tail, sep="\n", file=sys.stderr)
            return 1
        time.sleep(0.5)
        before = rss_kib(proxy.pid) or 0
        address = ("127.0.0.1", int(ready.group(1)))
        after = trio.run(hold_heads, address, args.connections, args.head_bytes, proxy.pid)
        per_connection = (after - before) * 1024 / args.connections
        print(
            f"RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB with {args.connections} partial "
            f"heads of {args.head_bytes} bytes: {per_connection / 1024:.1f} KiB per connection, "
            f"{per_connection / args.head_bytes:.2f} x the bytes held"
        )
    finally:
        registry.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
