"""Whether reloads creep memory: RSS over many SIGHUPs, each waited for.

    .venv/bin/python bench/reload_memory.py [--reloads 400] [--workers 1] [--settle-s 20]

Starts trioproxy on loopback with a configuration file, then sends SIGHUP ``--reloads`` times,
one after the other reload's line appears on stderr (so none is coalesced), the file changing
every time (``timeouts.client_idle_s`` alternating), as a configuration sync would. Prints the
RSS of every process of the tree (supervisor and workers) at the start, every 50 reloads, at
the end and after ``--settle-s`` of quiet: a creep is a per-reload slope that does not level
off. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._procs import Managed, ProcessRegistry, free_port, process_tree, rss_kib

RELOADED = re.compile(r"reload \S+: ok")


def tree_rss(root: int) -> dict[int, int]:
    return {pid: rss_kib(pid) or 0 for pid in process_tree(root)}


def line(label: str, rss: dict[int, int], start: dict[int, int]) -> str:
    total, base = sum(rss.values()), sum(start.values())
    each = " ".join(f"{kib / 1024:.1f}" for kib in rss.values())
    return f"{label:>12}: total {total / 1024:6.1f} MiB ({total - base:+6d} KiB) [{each}]"


def reload_once(proxy: Managed, config: Path, n: int) -> bool:
    config.write_text(f"[timeouts]\nclient_idle_s = {75 + n % 2}\n")
    os.kill(proxy.pid, signal.SIGHUP)
    # One line per process that reloads: the supervisor's (or the single process's).
    return proxy.wait_for_line(RELOADED, 30) is not None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reloads", type=int, default=400)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--settle-s", type=float, default=20.0)
    args = parser.parse_args()
    registry = ProcessRegistry()
    try:
        directory = Path(tempfile.mkdtemp(prefix="reload-memory-"))
        config = directory / "trioproxy.toml"
        config.write_text("[timeouts]\nclient_idle_s = 75\n")
        proxy = registry.spawn(
            "trioproxy",
            [sys.executable, "-m", "trioproxy", "--listen", "127.0.0.1:0", "--upstream",
             f"127.0.0.1:{free_port()}", "--config-dir", str(directory),
             "--workers", str(args.workers)],
            cpus=None,
        )  # fmt: skip
        if proxy.wait_for_line(re.compile(r"listening on 127\.0\.0\.1:\d+"), 30) is None:
            print(proxy.describe_exit(), file=sys.stderr)
            return 1
        time.sleep(2)  # let start-up garbage settle before the baseline
        start = tree_rss(proxy.pid)
        print(line("start", start, start), flush=True)
        began = time.monotonic()
        for n in range(1, args.reloads + 1):
            if not reload_once(proxy, config, n):
                print(f"reload {n}: no 'ok' line\n{proxy.describe_exit()}", file=sys.stderr)
                return 1
            if n % 50 == 0 or n == args.reloads:
                print(line(f"{n} reloads", tree_rss(proxy.pid), start), flush=True)
        took = time.monotonic() - began
        time.sleep(args.settle_s)
        end = tree_rss(proxy.pid)
        print(line(f"+{args.settle_s:g} s", end, start))
        growth = sum(end.values()) - sum(start.values())
        print(
            f"{args.reloads} reloads in {took:.1f} s: {growth:+d} KiB after settling, "
            f"{growth / args.reloads:+.2f} KiB per reload"
        )
    finally:
        registry.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
