"""``--workers N``: a supervising parent and N worker processes sharing the port.

Each worker is the ordinary single-process proxy (``python -m trioproxy``) with its own
listening socket on the same address, bound with ``SO_REUSEPORT`` so the kernel spreads new
connections across them. The parent serves no proxy traffic: it starts the workers, waits until
each says it is ready, restarts one that dies, passes SIGTERM/SIGINT on and waits for the drain.
Each worker writes whole access-log lines of at most PIPE_BUF bytes to the shared stdout, so
lines from different workers never interleave.

Process tree: the supervisor (the command's pid) has the workers as direct children, each a
``python -m trioproxy`` with ``TRIOPROXY_WORKER_NAME="worker N"`` in its environment and that
name in its stderr lines ("trioproxy[worker 0]: listening on ...").

Each worker has one channel to the supervisor, a Unix socketpair (`_channel`): the worker says
when it is ready; the supervisor asks it for a metrics snapshot when ``/metrics`` is scraped and
hands it a new configuration on SIGHUP. Requests never touch it. When the supervisor goes, even
by SIGKILL, the channel reads end of file and the worker drains.

With ``[admin] listen`` the supervisor owns the admin listener: ``/metrics`` is the sum of the
workers' snapshots, ``/healthz`` and ``/readyz`` answer 503 while any worker is not running and
accepting (starting, restarting) or while everything drains.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from ._channel import ChannelError, FrameBuffer, Message, frame

log = logging.getLogger("trioproxy")

# A worker that dies sooner than this after starting is crash-looping: wait before the next
# start, doubling up to the cap, instead of burning the CPU on restarts.
_QUICK_DEATH_S = 2.0
_MAX_BACKOFF_S = 30.0
# A worker that has not started listening by then never will (it imports and binds).
_READY_TIMEOUT_S = 30.0
# A worker answers a question on its channel between two requests: milliseconds.
_ASK_TIMEOUT_S = 5.0


class WorkerFailed(Exception):
    """A worker exited before it was ready to serve (bad config, port in use...)."""


class Channel:
    """One end of a supervisor-worker socketpair: whole messages, one exchange at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self._stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
        self._buffer = FrameBuffer()
        self._lock = trio.Lock()

    async def receive(self) -> Message | None:
        """The next message; None at end of file (or a broken channel)."""
        while (message := self._buffer.next()) is None:
            try:
                data = await self._stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return None
            if not data:
                return None
            self._buffer.feed(data)
        return message

    async def send(self, message: Message) -> None:
        await self._stream.send_all(frame(message))

    async def ask(self, message: Message, timeout_s: float = _ASK_TIMEOUT_S) -> Message | None:
        """Send a question and wait for its answer; None if none came in time."""
        async with self._lock:
            with trio.move_on_after(timeout_s):
                try:
                    await self.send(message)
                    return await self.receive()
                except (trio.BrokenResourceError, trio.ClosedResourceError, ChannelError):
                    return None
            return None

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self._stream)


@dataclass
class _Worker:
    slot: int
    process: trio.Process
    started_at: float
    channel: Channel
    generation: int  # the supervisor's configuration generation when it was started
    ready: trio.Event = field(default_factory=trio.Event)  # set when ready, or gone
    accepting: bool = False


@dataclass
class Config:
    """The configuration the workers run: a reload replaces it (``raw`` None: defaults)."""

    file: str
    raw: bytes | None
    generation: int = 0


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
        self.workers: dict[int, _Worker] = {}
        self.stopping = False
        self.config = config or Config("", None)
        # Reads and checks the configuration again (SIGHUP); None when it was rejected.
        self._reload = reload
        self._generation = 0
        self._extra_fds = tuple(extra_fds)  # inherited by every worker (shared rate limits)
        self._nursery: trio.Nursery

    @property
    def healthy(self) -> bool:
        """Every worker runs and accepts, and nothing is stopping."""
        return (
            not self.stopping
            and len(self.workers) == self.count
            and all(w.accepting and w.process.returncode is None for w in self.workers.values())
        )

    async def run(
        self,
        on_ready: Callable[[], None],
        *,
        admin: Callable[[trio.Nursery], Awaitable[None]] | None = None,
    ) -> int:
        """Supervise until a signal stops everything; returns the exit status for the parent.
        ``on_ready`` is called once every worker listens; ``admin`` (if given) is started
        in the supervisor's nursery before the workers."""
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                if admin is not None:
                    await admin(nursery)
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
                    if signum == signal.SIGHUP:
                        await self.reload_workers()
                        continue
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

    async def reload_workers(self) -> None:
        """SIGHUP: check the configuration once, then hand it to every running worker and
        wait for each to take it, then report (so the report means it is in force). A worker
        starting now gets it once ready (`_await_ready`)."""
        if self._reload is None:
            return
        checked = self._reload()
        if checked is None:
            return
        self.config, report = checked
        self.config.generation = self._generation = self._generation + 1
        async with trio.open_nursery() as nursery:
            for worker in list(self.workers.values()):
                if worker.accepting:
                    nursery.start_soon(self._hand_config, worker)
        report()

    async def _hand_config(self, worker: _Worker) -> None:
        config = self.config
        answer = await worker.channel.ask(("reload", config.file, config.raw))
        if answer is None or answer[0] != "reloaded":
            log.error("worker %d did not take the new configuration (no answer)", worker.slot)
        elif answer[1]:
            log.error("worker %d refused the new configuration: %s", worker.slot, answer[1])
        else:
            worker.generation = config.generation

    async def snapshots(self) -> list[Any]:
        """Each running worker's metrics snapshot (plain tuples), in slot order."""
        answers: dict[int, Message | None] = {}

        async def ask(worker: _Worker) -> None:
            answers[worker.slot] = await worker.channel.ask(("metrics",))

        async with trio.open_nursery() as nursery:
            for worker in self.workers.values():
                if worker.accepting:
                    nursery.start_soon(ask, worker)
        return [
            answer[1]
            for _, answer in sorted(answers.items())
            if answer is not None and answer[0] == "metrics"
        ]

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
            worker.accepting = False
            await worker.channel.aclose()
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
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        # The configuration the others run, not the file as it is now: a worker restarted
        # after a rejected reload must not read the rejected file.
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
            process = await trio.lowlevel.open_process(
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
        worker = _Worker(slot, process, trio.current_time(), Channel(ours), self.config.generation)
        self.workers[slot] = worker
        self._nursery.start_soon(self._await_ready, worker)
        return worker

    async def _await_ready(self, worker: _Worker) -> None:
        """A worker says ``("ready",)`` once it listens; end of file first means it died
        first (then ``ready`` is set too, and the process has exited)."""
        message = await worker.channel.receive()
        if message is None or message[0] != "ready":
            await worker.process.wait()
        elif worker.generation != self.config.generation:
            await self._hand_config(worker)  # a reload came while it was starting
        worker.accepting = worker.process.returncode is None
        worker.ready.set()

    async def _kill_on_second_signal(self, signals: AsyncIterator[int]) -> None:
        async for signum in signals:
            if signum == signal.SIGHUP:
                continue  # stopping: nothing to reload
            log.info("%s again: stopping the workers now", signal.Signals(signum).name)
            self._signal_all(signal.SIGKILL)
            return

    def _signal_all(self, signum: int) -> None:
        for worker in self.workers.values():
            worker.accepting = False
            if worker.process.returncode is None:
                worker.process.send_signal(signum)

    async def _wait_all(self) -> None:
        for worker in list(self.workers.values()):
            await worker.process.wait()


def _config_memfd(raw: bytes) -> int:
    fd = os.memfd_create("trioproxy.toml", 0)
    view = memoryview(raw)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def worker_config() -> tuple[str, bytes] | None:
    """In a worker: the configuration file's name and the bytes the supervisor runs."""
    fd = os.environ.pop("TRIOPROXY_CONFIG_FD", "")
    if not fd:
        return None
    with open(int(fd), "rb") as file:
        return os.environ.pop("TRIOPROXY_CONFIG_FILE", ""), file.read()


def worker_channel() -> Channel | None:
    """In a worker: the channel to the supervisor (None when run on its own)."""
    fd = os.environ.pop("TRIOPROXY_CHANNEL_FD", "")
    if not fd:
        return None
    return Channel(socket.socket(fileno=int(fd)))


async def serve_supervisor(
    channel: Channel,
    *,
    metrics: Callable[[], Any],
    reload: Callable[[str, bytes | None], str],
    shutdown: Callable[[], None],
) -> None:
    """In a worker: say ready, answer the supervisor's questions, and drain (``shutdown``)
    once the channel reads end of file: the supervisor is gone."""
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await channel.send(("ready",))
        while True:
            try:
                message = await channel.receive()
            except ChannelError as exc:
                log.error("supervisor channel: %s", exc)
                message = None
            if message is None:
                break
            if message[0] == "metrics":
                await channel.send(("metrics", metrics()))
            elif message[0] == "reload":
                await channel.send(("reloaded", reload(message[1], message[2])))
    log.warning("supervisor gone: stopping")
    shutdown()


def _describe(code: int) -> str:
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"status {code}"
