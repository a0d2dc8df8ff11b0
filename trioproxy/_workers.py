"""``--workers N``: a supervising parent and N worker processes sharing the port.

Each worker is the ordinary single-process proxy (``python -m trioproxy``) with its own
listening socket on the same address, bound with ``SO_REUSEPORT`` so the kernel spreads new
connections across them. The parent serves nothing: it starts the workers, waits until each
says it is ready, restarts one that dies, passes SIGTERM/SIGINT on and waits for the drain.
Each worker writes whole access-log lines of at most PIPE_BUF bytes to the shared stdout, so
lines from different workers never interleave.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import trio

log = logging.getLogger("trioproxy")

# A worker that dies sooner than this after starting is crash-looping: wait before the next
# start, doubling up to the cap, instead of burning the CPU on restarts.
_QUICK_DEATH_S = 2.0
_MAX_BACKOFF_S = 30.0
# A worker that has not started listening by then never will (it imports and binds).
_READY_TIMEOUT_S = 30.0


class WorkerFailed(Exception):
    """A worker exited before it was ready to serve (bad config, port in use...)."""


@dataclass
class _Worker:
    slot: int
    process: trio.Process
    started_at: float
    ready: trio.Event = field(default_factory=trio.Event)  # set when ready, or gone


class Supervisor:
    def __init__(self, worker_argv: Sequence[str], count: int, *, stop_timeout_s: float) -> None:
        self.worker_argv = list(worker_argv)
        self.count = count
        self.stop_timeout_s = stop_timeout_s
        self.workers: dict[int, _Worker] = {}
        self.stopping = False
        self._nursery: trio.Nursery
        # Workers hold the read end; only we hold the write end. If we die, even by SIGKILL,
        # they read EOF and drain: no orphaned workers keep the port.
        self._lifeline_read, self._lifeline_write = os.pipe()

    async def run(self, on_ready: Callable[[], None]) -> int:
        """Supervise until a signal stops everything; returns the exit status for the parent.
        ``on_ready`` is called once every worker listens."""
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    for slot in range(self.count):
                        await nursery.start(self._keep_running, slot)
                except WorkerFailed as exc:
                    log.error("%s", exc)
                    self.stopping = True
                    self._signal_all(signal.SIGTERM)
                    with trio.move_on_after(self.stop_timeout_s):
                        await self._wait_all()
                    self._signal_all(signal.SIGKILL)
                    nursery.cancel_scope.cancel()
                    return 1
                on_ready()
                async for signum in signals:
                    log.info("%s: stopping %d worker(s)", signal.Signals(signum).name, self.count)
                    self.stopping = True
                    self._signal_all(signum)
                    break
                with trio.move_on_after(self.stop_timeout_s) as waited:
                    async with trio.open_nursery() as waiting:
                        waiting.start_soon(self._kill_on_second_signal, signals)
                        await self._wait_all()
                        waiting.cancel_scope.cancel()
                if waited.cancelled_caught:
                    log.error("workers still running after %gs: killing them", self.stop_timeout_s)
                    self._signal_all(signal.SIGKILL)
                nursery.cancel_scope.cancel()
        # A worker stopped by our signal before it could install its handler (still starting)
        # ends by that signal: as clean as a drained exit.
        clean = {0, -signal.SIGTERM, -signal.SIGINT}
        return 0 if all(w.process.returncode in clean for w in self.workers.values()) else 1

    async def _keep_running(self, slot: int, *, task_status: trio.TaskStatus[None]) -> None:
        backoff = 0.5
        first = True
        while not self.stopping:
            worker = await self._start(slot)
            if first:
                with trio.move_on_after(_READY_TIMEOUT_S):
                    await worker.ready.wait()
                if not worker.ready.is_set():
                    worker.process.kill()
                    raise WorkerFailed(f"worker {slot} was not ready within {_READY_TIMEOUT_S:g}s")
                if worker.process.poll() is not None:
                    raise WorkerFailed(f"worker {slot} exited before it was ready")
                task_status.started()
                first = False
            code = await worker.process.wait()
            if self.stopping:
                return
            lived = trio.current_time() - worker.started_at
            log.error(
                "worker %d (pid %d) exited with %s; restarting",
                slot,
                worker.process.pid,
                _describe(code),
            )
            if lived < _QUICK_DEATH_S:
                await trio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
            else:
                backoff = 0.5

    async def _start(self, slot: int) -> _Worker:
        ready_read, ready_write = os.pipe()
        env = dict(
            os.environ,
            TRIOPROXY_WORKERS="1",
            TRIOPROXY_READY_FD=str(ready_write),
            TRIOPROXY_WORKER_NAME=f"worker {slot}",
            TRIOPROXY_LIFELINE_FD=str(self._lifeline_read),
        )
        try:
            process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "trioproxy", *self.worker_argv],
                env=env,
                pass_fds=(ready_write, self._lifeline_read),
                stdin=subprocess.DEVNULL,
                # Its own process group: a terminal's Ctrl-C reaches the supervisor only, which
                # passes it on once (twice would mean "stop now, skip the drain").
                start_new_session=True,
            )
        finally:
            os.close(ready_write)
        worker = _Worker(slot, process, trio.current_time())
        self.workers[slot] = worker
        self._nursery.start_soon(_await_ready, ready_read, worker)
        return worker

    async def _kill_on_second_signal(self, signals: AsyncIterator[int]) -> None:
        async for signum in signals:
            log.info("%s again: stopping the workers now", signal.Signals(signum).name)
            self._signal_all(signal.SIGKILL)
            return

    def _signal_all(self, signum: int) -> None:
        for worker in self.workers.values():
            if worker.process.returncode is None:
                worker.process.send_signal(signum)

    async def _wait_all(self) -> None:
        for worker in list(self.workers.values()):
            await worker.process.wait()


async def _await_ready(fd: int, worker: _Worker) -> None:
    """A worker writes one byte to its ready pipe once it listens; EOF without it means the
    worker died first (then ``ready`` is set too, and the process has exited)."""
    async with trio.lowlevel.FdStream(fd) as pipe:
        try:
            got = await pipe.receive_some(1)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            got = b""
    if not got:
        await worker.process.wait()
    worker.ready.set()


async def stop_when_supervisor_goes(shutdown: Callable[[], None]) -> None:
    """In a worker: drain (``shutdown``) once the supervisor's lifeline pipe reads EOF."""
    fd = os.environ.pop("TRIOPROXY_LIFELINE_FD", "")
    if not fd:
        return
    async with trio.lowlevel.FdStream(int(fd)) as lifeline:
        with contextlib.suppress(trio.BrokenResourceError):
            while await lifeline.receive_some(1):
                pass
    log.warning("supervisor gone: stopping")
    shutdown()


def announce_ready() -> None:
    """In a worker: tell the supervisor this process is listening."""
    fd = os.environ.pop("TRIOPROXY_READY_FD", "")
    if fd:
        try:
            os.write(int(fd), b"1")
            os.close(int(fd))
        except OSError:
            pass


def _describe(code: int) -> str:
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"status {code}"
