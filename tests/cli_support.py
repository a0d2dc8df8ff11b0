"""Running the real ``trioproxy`` command in a subprocess, as the container does."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from .support import Client

# The proxy's own ready line (with --workers, the supervisor's: workers tag theirs), as text
# ("trioproxy: listening on ...") or JSON ("message": "listening on ...").
READY = re.compile(rb'(?:trioproxy: |"message": ")listening on ([^\s,"]+):(\d+), upstream')


@dataclass
class ProxyProcess:
    process: trio.Process
    port: int
    stderr: bytearray = field(default_factory=bytearray)
    stdout: bytearray = field(default_factory=bytearray)
    output: trio.Event = field(default_factory=trio.Event)  # replaced after each chunk

    async def wait_for_output(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds, checking each time the process writes."""
        while not predicate():
            await self.output.wait()

    async def reload(self, marker: bytes, timeout_s: float = 10) -> None:
        """SIGHUP, then wait for one more ``marker`` on stderr (the reload's outcome line)."""
        before = self.stderr.count(marker)
        self.process.send_signal(signal.SIGHUP)
        with trio.fail_after(timeout_s):
            await self.wait_for_output(lambda: self.stderr.count(marker) > before)

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def rss_peak_kib(self) -> int:
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        raise AssertionError("no VmHWM")


async def _pump(
    stream: trio.abc.ReceiveStream,
    sink: bytearray,
    proc: ProxyProcess,
    ready: trio.Event | None = None,
) -> None:
    async for chunk in stream:
        sink += chunk
        proc.output.set()
        proc.output = trio.Event()
        if ready is not None and READY.search(sink):
            ready.set()
    if ready is not None:
        ready.set()  # EOF: the process is gone; the caller finds out which


@asynccontextmanager
async def cli_proxy(
    upstream: tuple[str, int], *args: str, config_dir: str | None = None
) -> AsyncIterator[ProxyProcess]:
    """``python -m trioproxy`` on 127.0.0.1:0; ready once its stderr announces the port.

    Without ``config_dir``, an empty directory: the defaults."""
    with tempfile.TemporaryDirectory() as empty:
        async with _cli_proxy(upstream, *args, config_dir=config_dir or empty) as proxy:
            yield proxy


@asynccontextmanager
async def _cli_proxy(
    upstream: tuple[str, int], *args: str, config_dir: str
) -> AsyncIterator[ProxyProcess]:
    command = [
        sys.executable,
        "-m",
        "trioproxy",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        f"{upstream[0]}:{upstream[1]}",
        "--config-dir",
        config_dir,
        *args,
    ]
    async with trio.open_nursery() as nursery:
        process = await trio.lowlevel.open_process(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env()
        )
        assert process.stdout is not None and process.stderr is not None
        proc = ProxyProcess(process, 0)
        ready = trio.Event()
        nursery.start_soon(_pump, process.stdout, proc.stdout, proc)
        nursery.start_soon(_pump, process.stderr, proc.stderr, proc, ready)
        try:
            with trio.fail_after(10):
                await ready.wait()
            match = READY.search(proc.stderr)
            if match is None:
                raise AssertionError(f"proxy exited: {proc.stderr.decode()}")
            proc.port = int(match.group(2))
            yield proc
        finally:
            await _ended(process)


@asynccontextmanager
async def command_process(command: Sequence[str]) -> AsyncIterator[trio.Process]:
    """``command`` running with its stderr piped (TRIOPROXY_ variables unset); killed at the
    end of the block if it still runs."""
    process = await trio.lowlevel.open_process(command, stderr=subprocess.PIPE, env=_env())
    try:
        yield process
    finally:
        await _ended(process)
        if process.stderr is not None:
            await process.stderr.aclose()


async def _ended(process: trio.Process) -> None:
    """Killed if it still runs, and waited for (a bounded wait)."""
    if process.poll() is None:
        process.kill()
    with trio.move_on_after(5):
        await process.wait()


async def stderr_until_ready(process: trio.Process) -> bytearray:
    """What ``process`` wrote on stderr up to the proxy's ready line (AssertionError, with
    that output, if it closed stderr first)."""
    assert process.stderr is not None
    seen = bytearray()
    while not READY.search(seen):
        chunk = await process.stderr.receive_some(65536)
        assert chunk, seen.decode()
        seen += chunk
    return seen


async def run_cli(
    args: Sequence[str], timeout_s: float = 10, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """The command to its end; ``env`` adds variables (TRIOPROXY_ ones are otherwise unset)."""
    with trio.fail_after(timeout_s):
        return await trio.run_process(
            [sys.executable, "-m", "trioproxy", *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env={**_env(), **(env or {})},
        )


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIOPROXY_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


async def wait_for_exit(process: trio.Process, timeout_s: float = 10) -> int:
    with trio.fail_after(timeout_s):
        return await process.wait()


@dataclass
class ReloadLoad:
    """Keep-alive clients of a proxy being reloaded (SIGHUP). Every answer to ``GET /load``
    must be the echo origin's 200 with an ``X-Generation`` header no older than ``returned``:
    the generation whose reload line the test has seen. Failures are collected, not raised,
    so the load runs on to the end; ``done`` counts the requests answered."""

    returned: int = 0
    done: int = 0
    failures: list[str] = field(default_factory=list)
    stop: trio.Event = field(default_factory=trio.Event)
    _changed: trio.Event = field(default_factory=trio.Event)

    async def client(self, address: tuple[str, int]) -> None:
        """One client until ``stop``: a new connection whenever the proxy closes one (as
        browsers do), requests one after another on each."""
        while not self.stop.is_set():
            async with Client.connect(address) as client:
                while not self.stop.is_set():
                    floor = self.returned
                    try:
                        reply = await client.request(b"GET", b"/load")
                    except Exception as exc:  # truncated, reset, malformed: all count
                        self.failures.append(f"request failed: {exc!r}")
                        return
                    seen = int(reply.header(b"x-generation") or b"-1")
                    if reply.status != 200 or seen < floor or reply.json()["path"] != "/load":
                        self.failures.append(f"status {reply.status}, generation {seen} < {floor}")
                    self.done += 1
                    self._changed.set()
                    self._changed = trio.Event()
                    if reply.header(b"connection") == b"close":
                        break  # keepalive_requests reached: a new connection

    async def wait_for_more(self, count: int) -> None:
        """Until ``count`` more requests have been answered."""
        target = self.done + count
        while self.done < target:
            await self._changed.wait()
