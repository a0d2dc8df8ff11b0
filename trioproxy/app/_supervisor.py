"""``--workers N``: the supervising parent, a plain select loop (no trio, no h11).

Each worker is the ordinary single-process proxy (``python -m trioproxy``) with its own
listening socket on the same address, bound with ``SO_REUSEPORT`` so the kernel spreads new
connections across them. The parent serves no proxy traffic: it starts the workers, waits until
each says it is ready, restarts one that dies, passes SIGTERM/SIGINT on and waits for the drain,
hands a reloaded configuration to every worker on SIGHUP, and serves the admin endpoints
(`_superadmin`) when they are on. It stays small (no trio, no h11: about half a worker's memory),
since it only waits.

Process tree: the supervisor (the command's pid) has the workers as direct children, each a
``python -m trioproxy`` with ``TRIOPROXY_WORKER_NAME="worker N"`` in its environment and that
name in its stderr lines ("trioproxy[worker 0]: listening on ..."). Each worker writes whole
access-log lines of at most PIPE_BUF bytes to the shared stdout, so lines never interleave.

Each worker has one channel to the supervisor, a Unix socketpair (`_channel`; the
supervisor's end and each worker's state are in `_workerlink`): the worker says
when it is ready; the supervisor asks it for a metrics snapshot when ``/metrics`` is scraped and
hands it a new configuration on SIGHUP. Requests never touch it. When the supervisor goes, even
by SIGKILL, the channel reads end of file and the worker drains. A worker is also handed the
configuration the others run (a memfd of its bytes) when it starts, never the file as it is
then, so a restart after a rejected reload runs the last good configuration.

Signals reach the loop through ``signal.set_wakeup_fd``; a worker's death through SIGCHLD.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from ._channel import ChannelError, Message
from ._workerlink import Worker, WorkerChannel, ask_all

__all__ = ["Config", "Reloaded", "Supervisor"]

log = logging.getLogger("trioproxy")

# A worker that dies sooner than this after starting is crash-looping: wait before the next
# start, doubling up to the cap, instead of burning the CPU on restarts.
_QUICK_DEATH_S = 2.0
_MAX_BACKOFF_S = 30.0
# A worker that has not started listening by then never will (it imports and binds).
_READY_TIMEOUT_S = 30.0
_CLEAN = {0, -signal.SIGTERM, -signal.SIGINT}


class Config:
    """The configuration the workers run: a reload replaces it (``raw`` None: defaults)."""

    __slots__ = ("file", "generation", "raw")

    def __init__(self, file: str, raw: bytes | None, generation: int = 0) -> None:
        self.file = file
        self.raw = raw
        self.generation = generation


# A checked reload: the new configuration, and what to say once every worker has it.
Reloaded = tuple[Config, Callable[[], None]]


class Supervisor:
    def __init__(
        self,
        worker_argv: Sequence[str],
        count: int,
        *,
        stop_timeout_s: float,
        config: Config | None = None,
        reload: Callable[[], Reloaded | None] | None = None,
        extra_fds: Sequence[int] = (),
    ) -> None:
        self.worker_argv = list(worker_argv)
        self.count = count
        self.stop_timeout_s = stop_timeout_s
        self.workers: dict[int, Worker] = {}
        self.stopping = False
        self.config = config or Config("", None)
        self._reload = reload  # reads and checks the configuration; None when rejected
        self._extra_fds = tuple(extra_fds)  # inherited by every worker (shared rate limits)
        self._selector = selectors.DefaultSelector()
        self._restart_at: dict[int, float] = {}
        self._backoff: dict[int, float] = {}

    @property
    def healthy(self) -> bool:
        """Every worker runs and accepts, and nothing is stopping."""
        workers = list(self.workers.values())
        return (
            not self.stopping
            and len(workers) == self.count
            and all(w.accepting and w.process.returncode is None for w in workers)
        )

    def snapshots(self) -> list[Any]:
        """Each accepting worker's metrics snapshot (plain tuples), in slot order; asked of
        all of them at once."""
        workers = sorted((w for w in list(self.workers.values()) if w.accepting), key=_slot)
        answers = ask_all(workers, ("metrics",))
        return [a[1] for a in answers if a is not None and a[0] == "metrics"]

    def run(
        self,
        on_ready: Callable[[], None],
        *,
        admin: tuple[socket.socket, Callable[[], None]] | None = None,
    ) -> int:
        """Supervise until a signal stops everything; the exit status for the parent.
        ``on_ready`` is called once every worker listens; ``admin`` is a listening socket
        and what to call when it is readable."""
        wake_read, wake_write = socket.socketpair()
        wake_read.setblocking(False)
        wake_write.setblocking(False)
        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)
        previous = {signum: signal.signal(signum, _note) for signum in handled}
        old_wakeup = signal.set_wakeup_fd(wake_write.fileno(), warn_on_full_buffer=False)
        self._selector.register(wake_read, selectors.EVENT_READ, "signals")
        if admin is not None:
            self._selector.register(admin[0], selectors.EVENT_READ, admin[1])
        try:
            return self._supervise(on_ready, wake_read)
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._selector.close()
            wake_read.close()
            wake_write.close()

    def _supervise(self, on_ready: Callable[[], None], wake: socket.socket) -> int:
        for slot in range(self.count):
            self._start(slot)
        ready_by = time.monotonic() + _READY_TIMEOUT_S
        starting = True
        stop_by: float | None = None
        while True:
            timeouts = [*self._restart_at.values()]
            timeouts.append(ready_by if starting else float("inf"))
            timeouts.append(stop_by if stop_by is not None else float("inf"))
            wait = max(0.0, min(timeouts) - time.monotonic())
            for key, _ in self._selector.select(None if wait == float("inf") else wait):
                if key.data == "signals":
                    stop_by = self._on_signals(wake, stop_by)
                elif isinstance(key.data, Worker):
                    self._on_channel(key.data)
                else:
                    key.data()  # the admin listener
            self._reap()
            if starting:
                if self.stopping:
                    starting = False
                elif all(w.answered for w in self.workers.values()):
                    failed = [w for w in self.workers.values() if not w.accepting]
                    if failed:
                        log.error("worker %d exited before it was ready", failed[0].slot)
                        return self._abort()
                    starting = False
                    on_ready()
                elif time.monotonic() >= ready_by:
                    late = min(w.slot for w in self.workers.values() if not w.answered)
                    log.error("worker %d was not ready within %gs", late, _READY_TIMEOUT_S)
                    return self._abort()
            if self.stopping:
                if all(w.process.returncode is not None for w in self.workers.values()):
                    break
                if stop_by is not None and time.monotonic() >= stop_by:
                    log.error("workers still running after %gs: killing them", self.stop_timeout_s)
                    self._signal_all(signal.SIGKILL)
                    self._wait_all()
                    break
            else:
                self._restart_due()
        return 0 if all(w.process.returncode in _CLEAN for w in self.workers.values()) else 1

    def _on_signals(self, wake: socket.socket, stop_by: float | None) -> float | None:
        try:
            received = wake.recv(4096)
        except BlockingIOError:
            return stop_by
        for signum in received:
            if signum == signal.SIGCHLD:
                continue  # _reap looks after every wake-up
            if signum == signal.SIGHUP:
                if not self.stopping:
                    self.reload_workers()
                continue
            name = signal.Signals(signum).name
            if self.stopping:
                log.info("%s again: stopping the workers now", name)
                self._signal_all(signal.SIGKILL)
                continue
            log.info("%s: stopping %d worker(s)", name, self.count)
            self.stopping = True
            self._signal_all(signum)
            stop_by = time.monotonic() + self.stop_timeout_s
        return stop_by

    def reload_workers(self) -> None:
        """SIGHUP: check the configuration once, then hand it to every accepting worker and
        wait for each to take it, then report (so the report means it is in force). A worker
        starting now gets it once ready (`_on_channel`)."""
        if self._reload is None:
            return
        checked = self._reload()
        if checked is None:
            return
        config, report = checked
        config.generation = self.config.generation + 1
        self.config = config
        workers = [w for w in self.workers.values() if w.accepting]
        for worker, answer in zip(workers, ask_all(workers, self._reload_message()), strict=True):
            self._took(worker, answer)
        report()

    def _reload_message(self) -> Message:
        return ("reload", self.config.file, self.config.raw)

    def _took(self, worker: Worker, answer: Message | None) -> None:
        if answer is None or answer[0] != "reloaded":
            log.error("worker %d did not take the new configuration (no answer)", worker.slot)
        elif answer[1]:
            log.error("worker %d refused the new configuration: %s", worker.slot, answer[1])
        else:
            worker.generation = self.config.generation

    def _on_channel(self, worker: Worker) -> None:
        """Until a worker is ready, its channel is watched here for its ``("ready",)``."""
        try:
            data = worker.channel.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        message = None
        if data:
            worker.channel.buffer.feed(data)
            try:
                message = worker.channel.buffer.next()
            except ChannelError:
                data = b""
            if message is None and data:
                return  # more to come
        self._selector.unregister(worker.channel.sock)
        worker.answered = True
        if message is None or message[0] != "ready":
            return  # it died before it was ready: _reap restarts it
        worker.channel.sock.setblocking(True)
        if worker.generation != self.config.generation:  # a reload came while it started
            self._took(worker, worker.channel.ask(self._reload_message()))
        worker.accepting = True

    def _reap(self) -> None:
        for worker in list(self.workers.values()):
            if worker.process.returncode is not None:
                continue  # seen already
            code = worker.process.poll()
            if code is None:
                continue
            worker.accepting = False
            if not worker.answered:
                self._selector.unregister(worker.channel.sock)
                worker.answered = True
            worker.channel.sock.close()
            if self.stopping:
                continue
            log.error(
                "worker %d (pid %d) exited with %s; restarting",
                worker.slot,
                worker.process.pid,
                _describe(code),
            )
            backoff = self._backoff.get(worker.slot, 0.5)
            if time.monotonic() - worker.started_at < _QUICK_DEATH_S:
                self._restart_at[worker.slot] = time.monotonic() + backoff
                self._backoff[worker.slot] = min(backoff * 2, _MAX_BACKOFF_S)
            else:
                self._restart_at[worker.slot] = time.monotonic()
                self._backoff[worker.slot] = 0.5

    def _restart_due(self) -> None:
        now = time.monotonic()
        for slot, when in list(self._restart_at.items()):
            if when <= now:
                del self._restart_at[slot]
                self._start(slot)

    def _start(self, slot: int) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        config_fd = _config_memfd(self.config.raw or b"")
        env = dict(
            os.environ,
            TRIOPROXY_WORKERS="1",
            TRIOPROXY_CHANNEL_FD=str(theirs.fileno()),
            TRIOPROXY_CONFIG_FD=str(config_fd),
            TRIOPROXY_CONFIG_FILE=self.config.file,
            TRIOPROXY_WORKER_NAME=f"worker {slot}",
        )
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "trioproxy", *self.worker_argv],
                env=env,
                pass_fds=(theirs.fileno(), config_fd, *self._extra_fds),
                stdin=subprocess.DEVNULL,
                # Its own process group: a terminal's Ctrl-C reaches the supervisor only, which
                # passes it on once (twice would mean "stop now, skip the drain").
                start_new_session=True,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
            os.close(config_fd)
        ours.setblocking(False)
        worker = Worker(
            slot, process, time.monotonic(), WorkerChannel(ours), self.config.generation
        )
        self.workers[slot] = worker
        self._selector.register(ours, selectors.EVENT_READ, worker)

    def _abort(self) -> int:
        self.stopping = True
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout_s
        for worker in self.workers.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.process.wait(max(0.0, deadline - time.monotonic()))
        self._signal_all(signal.SIGKILL)
        self._wait_all()
        return 1

    def _signal_all(self, signum: int) -> None:
        for worker in self.workers.values():
            worker.accepting = False
            if worker.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.send_signal(signum)

    def _wait_all(self) -> None:
        for worker in self.workers.values():
            worker.process.wait()


def _note(signum: int, frame: object) -> None:
    """The signal's number reaches the loop through the wakeup fd; nothing to do here."""


def _config_memfd(raw: bytes) -> int:
    fd = os.memfd_create("trioproxy.toml", 0)
    view = memoryview(raw)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _slot(worker: Worker) -> int:
    return worker.slot


def _describe(code: int) -> str:
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"status {code}"
