"""``--workers N``: the supervising parent, a plain select loop (no trio, no h11).

The supervisor binds the listening socket once and every worker inherits it (its descriptor
passed at spawn, as nginx, gunicorn and hypercorn do): the workers accept from one queue, so a
worker that hangs takes no connection it does not accept, and a second instance on the port
gets "address already in use" (no ``SO_REUSEPORT``, which would let it, or any process of the
same user, join the port). Each worker is the ordinary single-process proxy (``python -m
trioproxy``). The parent serves no proxy traffic: it starts the workers, waits until each says
it is ready, restarts one that dies or stops answering, passes SIGTERM/SIGINT on and waits for
the drain, hands a reloaded configuration to every worker on SIGHUP, and serves the admin
endpoints (`_superadmin`) when they are on. It stays small (no trio, no h11: about half a
worker's memory), since it only waits.

Nothing in the loop blocks: a channel question is written when the socket takes it and its
answer is read when it comes (`_workerlink`); a reload's configuration check is a subprocess
whose output the loop reads as it arrives; admin threads ask the loop for metrics
(`call_soon`) and wait for it. So /healthz, restarts and SIGTERM are served during a reload.
SIGHUPs coalesce: one reload at a time (the check, then the hand-out to every worker), and at
most one more pending, which reads the file as it is when it starts.

Process tree: the supervisor (the command's pid) has the workers as direct children, each a
``python -m trioproxy`` with ``TRIOPROXY_WORKER_NAME="worker N"`` in its environment and that
name in its stderr lines ("trioproxy[worker 0]: listening on ..."). Each worker writes whole
access-log lines of at most PIPE_BUF bytes to the shared stdout, so lines never interleave.

Each worker has one channel to the supervisor, a Unix socketpair (`_channel`; the
supervisor's end and each worker's state are in `_workerlink`): the worker says when it is
ready; the supervisor pings it every `PING_INTERVAL_S` (a worker with a question unanswered
for `HUNG_AFTER_S` is hung: it is killed and replaced), asks it for a metrics snapshot when
``/metrics`` is scraped, relays the harness endpoints to it (/faults, /journal:
`Supervisor.control`, `_supercontrol`) and hands it a new configuration on SIGHUP. Requests
never touch it.
When the supervisor goes, even by SIGKILL, the channel reads end of file and the worker
drains. A worker is also handed the configuration the others run (a memfd of its bytes) when
it starts, never the file as it is then, so a restart after a rejected reload runs the last
good configuration.

Signals reach the loop through ``signal.set_wakeup_fd``; a worker's death through SIGCHLD.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NamedTuple

from ._channel import Message
from ._supercontrol import FaultLedger
from ._workerlink import ASK_TIMEOUT_S, CONTROL_TIMEOUT_S, Worker, WorkerChannel

__all__ = ["Config", "ReloadCheck", "Reloaded", "Supervisor"]

log = logging.getLogger("trioproxy")

# A worker that dies sooner than this after starting is crash-looping: wait before the next
# start, doubling up to the cap, instead of burning the CPU on restarts.
_QUICK_DEATH_S = 2.0
_MAX_BACKOFF_S = 30.0
# A worker that has not started listening by then never will (it imports and binds).
_READY_TIMEOUT_S = 30.0
# A ready worker is pinged this often; one that leaves a question unanswered this long is hung
# (stopped, or its event loop blocked): noticed within PING_INTERVAL_S + HUNG_AFTER_S < 2 s.
PING_INTERVAL_S = 0.25
HUNG_AFTER_S = 1.5
# The reload's configuration check reads one file: a minute means it is stuck.
_CHECK_TIMEOUT_S = 60.0
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


# Plain classes, not dataclasses: importing `dataclasses` brings `inspect`, `ast` and `dis`
# into a process that only spawns and watches workers.
class ReloadCheck(NamedTuple):
    """How to check a reload: a command (``stdin`` its input), and what its exit status and
    output mean (None: rejected, it has said why on stderr)."""

    argv: list[str]
    stdin: bytes
    finish: Callable[[int, bytes], Reloaded | None]


class _Checking:
    __slots__ = ("deadline", "eof", "finish", "output", "process")

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        finish: Callable[[int, bytes], Reloaded | None],
        deadline: float,
    ) -> None:
        self.process = process
        self.finish = finish
        self.deadline = deadline
        self.output = bytearray()
        self.eof = False


class Supervisor:
    def __init__(
        self,
        worker_argv: Sequence[str],
        count: int,
        *,
        stop_timeout_s: float,
        config: Config | None = None,
        reload: Callable[[], ReloadCheck] | None = None,
        extra_fds: Sequence[int] = (),
        listener: socket.socket | None = None,
    ) -> None:
        self.worker_argv = list(worker_argv)
        self.count = count
        self.stop_timeout_s = stop_timeout_s
        self.workers: dict[int, Worker] = {}
        self.stopping = False
        self.hung_total = 0  # workers killed because they stopped answering
        self.config = config or Config("", None)
        self._reload = reload  # how to check the configuration on SIGHUP
        self._extra_fds = tuple(extra_fds)  # inherited by every worker (shared rate limits)
        self._listener = listener  # inherited by every worker: the port, bound once
        self._selector = selectors.DefaultSelector()
        self._restart_at: dict[int, float] = {}
        self._backoff: dict[int, float] = {}
        self._forced = False  # a second SIGTERM: stopped at once, as asked
        # Reloads: at most one pending, one checking or being handed out.
        self._reload_pending = False
        self._checking: _Checking | None = None
        self._handout: set[int] | None = None  # slots yet to take the new configuration
        self._report: Callable[[], None] = _nothing
        # Work other threads (admin probes) hand to the loop, and the loop's doorbell.
        self._calls: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._doorbell: socket.socket | None = None
        # The runtime faults every worker has (POST /faults), for workers that start later.
        self.faults = FaultLedger()

    @property
    def healthy(self) -> bool:
        """Every worker runs and accepts (none hung), and nothing is stopping."""
        workers = list(self.workers.values())
        return (
            not self.stopping
            and len(workers) == self.count
            and all(w.accepting and w.process.returncode is None for w in workers)
        )

    def call_soon(self, call: Callable[[], None]) -> bool:
        """From another thread: run ``call`` on the loop soon; False if it is not running."""
        doorbell = self._doorbell
        if doorbell is None:
            return False
        self._calls.put(call)
        with contextlib.suppress(OSError):  # full: the loop has been rung already
            doorbell.send(b"\0")
        return True

    def snapshots(self) -> list[Any]:
        """From another thread (an admin probe): each accepting worker's metrics snapshot
        (plain tuples), in slot order, asked of all of them at once by the loop."""
        got = self._ask_every(("metrics",))
        return [a[1] for _, a in got if a is not None and a[0] == "metrics"]

    def control(self, method: bytes, target: bytes, body: bytes) -> list[tuple[int, Any]]:
        """From another thread (an admin request to /faults or /journal): relay it to every
        accepting worker and return, in slot order, each one's answer (``("controlled",
        status, content_type, body, clock_offset_s)``), or None where none came. A fault
        change every worker took is kept (`FaultLedger`) and handed to a worker that starts
        later, as a reloaded configuration is."""
        message = ("control", method, target, body)
        return self._ask_every(message, partial(self._controlled, message), CONTROL_TIMEOUT_S)

    def _ask_every(
        self,
        message: Message,
        on_done: Callable[[list[Worker], dict[int, Message | None]], None] | None = None,
        timeout_s: float = ASK_TIMEOUT_S,
    ) -> list[tuple[int, Message | None]]:
        """From another thread: ``message`` asked of every accepting worker at once by the
        loop, and each one's answer (None if none came in time), in slot order. ``on_done``
        runs on the loop once every worker asked has answered (or failed to)."""
        done = threading.Event()
        lock = threading.Lock()
        answers: dict[int, Message | None] = {}

        def ask_all() -> None:  # on the loop
            workers = sorted((w for w in self.workers.values() if w.accepting), key=_slot)
            if not workers:
                done.set()
                if on_done is not None:
                    on_done(workers, {})

            def answered(slot: int, answer: Message | None) -> None:
                with lock:
                    answers[slot] = answer
                    finished = len(answers) == len(workers)
                if finished:
                    if on_done is not None:
                        on_done(workers, dict(answers))
                    done.set()

            for worker in workers:
                self._ask(worker, message, partial(answered, worker.slot), timeout_s)

        if self.call_soon(ask_all):
            done.wait(timeout_s + 1.0)
        with lock:
            return [(slot, answers[slot]) for slot in sorted(answers)]

    def _controlled(
        self, message: Message, asked: list[Worker], answers: dict[int, Message | None]
    ) -> None:
        """On the loop: a relayed fault change has been answered by every worker asked. If
        each took it, the ledger keeps it, and a worker that became ready meanwhile (not
        asked, and not in the ledger when it was handed the faults) is handed it now."""
        if not self.faults.note(message, [answers.get(w.slot) for w in asked]):
            return
        for worker in self.workers.values():
            if worker.accepting and worker not in asked:
                self._ask(worker, message, _nothing_with)

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
        bell_read, bell_write = socket.socketpair()
        for sock in (wake_read, wake_write, bell_read, bell_write):
            sock.setblocking(False)
        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)
        previous = {signum: signal.signal(signum, _note) for signum in handled}
        old_wakeup = signal.set_wakeup_fd(wake_write.fileno(), warn_on_full_buffer=False)
        self._selector.register(wake_read, selectors.EVENT_READ, "signals")
        self._selector.register(bell_read, selectors.EVENT_READ, "calls")
        self._doorbell = bell_write
        if admin is not None:
            self._selector.register(admin[0], selectors.EVENT_READ, admin[1])
        try:
            return self._supervise(on_ready, wake_read, bell_read)
        finally:
            self._doorbell = None
            self._stop_checking()
            signal.set_wakeup_fd(old_wakeup)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            # A config-sync tool's SIGHUP after the loop must not kill the exiting process.
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            self._selector.close()
            for sock in (wake_read, wake_write, bell_read, bell_write):
                sock.close()

    def _supervise(
        self, on_ready: Callable[[], None], wake: socket.socket, bell: socket.socket
    ) -> int:
        for slot in range(self.count):
            self._start(slot)
        ready_by = time.monotonic() + _READY_TIMEOUT_S
        starting = True
        stop_by: float | None = None
        while True:
            deadlines = [self._next_deadline()]
            deadlines.append(ready_by if starting else float("inf"))
            deadlines.append(stop_by if stop_by is not None else float("inf"))
            wait = max(0.0, min(deadlines) - time.monotonic())
            events = self._selector.select(None if wait == float("inf") else wait)
            for key, mask in events:
                if key.data == "signals":
                    stop_by = self._on_signals(wake, stop_by)
                elif key.data == "calls":
                    self._run_calls(bell)
                elif isinstance(key.data, Worker):
                    self._on_channel(key.data, mask)
                elif isinstance(key.data, _Checking):
                    self._on_check_output(key.data)
                else:
                    key.data()  # the admin listener
            self._reap()
            self._check_progress()
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
                self._heartbeat()
                self._restart_due()
        clean = _CLEAN | {-signal.SIGKILL} if self._forced else _CLEAN
        return 0 if all(w.process.returncode in clean for w in self.workers.values()) else 1

    def _next_deadline(self) -> float:
        """The next time the loop has something to do without an event."""
        times = [*self._restart_at.values()]
        if self._checking is not None:
            times.append(self._checking.deadline)
        for worker in self.workers.values():
            times.append(worker.channel.next_deadline())
            if worker.accepting and not self.stopping:
                since = worker.channel.waiting_since()
                times.append(worker.next_ping if since is None else since + HUNG_AFTER_S)
        return min(times, default=float("inf"))

    def _run_calls(self, bell: socket.socket) -> None:
        with contextlib.suppress(OSError):
            bell.recv(4096)
        while True:
            try:
                call = self._calls.get_nowait()
            except queue.Empty:
                return
            call()

    def _on_signals(self, wake: socket.socket, stop_by: float | None) -> float | None:
        try:
            received = wake.recv(4096)
        except BlockingIOError:
            return stop_by
        for signum in received:
            if signum == signal.SIGCHLD:
                continue  # _reap looks after every wake-up
            if signum == signal.SIGHUP:
                self.request_reload()
                continue
            name = signal.Signals(signum).name
            if self.stopping:
                log.info("%s again: stopping the workers now", name)
                self._forced = True
                self._signal_all(signal.SIGKILL)
                continue
            log.info("%s: stopping %d worker(s)", name, self.count)
            self.stopping = True
            self._stop_reloading()
            if self._listener is not None:
                # The workers close theirs as they drain: then the port is closed, and new
                # clients are refused instead of queued for nobody.
                self._listener.close()
            self._signal_all(signum)
            stop_by = time.monotonic() + self.stop_timeout_s
        return stop_by

    # --- Reloads ------------------------------------------------------------------------------

    def request_reload(self) -> None:
        """SIGHUP: a reload once the one in progress (if any) is done. Many requests while
        one runs make one more, which reads the file as it is then."""
        if self._reload is None or self.stopping:
            return
        self._reload_pending = True
        self._next_reload()

    def _next_reload(self) -> None:
        if not self._reload_pending or self._checking is not None or self._handout is not None:
            return
        if self._reload is None or self.stopping:
            return
        self._reload_pending = False
        check = self._reload()
        stdin = _config_memfd(check.stdin)  # a file: the loop never waits on the check's input
        try:
            process = subprocess.Popen(check.argv, stdin=stdin, stdout=subprocess.PIPE)
        except OSError as exc:
            log.error("config: could not be checked: %s", exc)
            return
        finally:
            os.close(stdin)
        assert process.stdout is not None
        os.set_blocking(process.stdout.fileno(), False)
        deadline = time.monotonic() + _CHECK_TIMEOUT_S
        self._checking = _Checking(process, check.finish, deadline)
        self._selector.register(process.stdout, selectors.EVENT_READ, self._checking)

    def _on_check_output(self, checking: _Checking) -> None:
        assert checking.process.stdout is not None
        try:
            data = os.read(checking.process.stdout.fileno(), 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            checking.output += data
            return
        checking.eof = True
        self._selector.unregister(checking.process.stdout)

    def _check_progress(self) -> None:
        """The reload's check has finished (or run out of time): hand its result out."""
        checking = self._checking
        if checking is None:
            return
        if checking.eof and checking.process.poll() is not None:
            self._checking = None
            assert checking.process.stdout is not None
            checking.process.stdout.close()
            checked = checking.finish(checking.process.returncode, bytes(checking.output))
            if checked is None:
                self._next_reload()
            else:
                self._hand_out(*checked)
        elif time.monotonic() >= checking.deadline:
            log.error("config: could not be checked within %gs", _CHECK_TIMEOUT_S)
            self._stop_checking()
            self._next_reload()

    def _stop_checking(self) -> None:
        checking, self._checking = self._checking, None
        if checking is None:
            return
        assert checking.process.stdout is not None
        if not checking.eof:
            self._selector.unregister(checking.process.stdout)
        checking.process.stdout.close()
        checking.process.kill()
        checking.process.wait()  # killed: at once

    def _stop_reloading(self) -> None:
        self._reload_pending = False
        self._handout = None
        self._stop_checking()

    def _hand_out(self, config: Config, report: Callable[[], None]) -> None:
        """Hand the checked configuration to every accepting worker; report once each has
        taken it (so the report means it is in force). A worker starting now gets it once
        ready (`_ready`)."""
        config.generation = self.config.generation + 1
        self.config = config
        workers = [w for w in self.workers.values() if w.accepting]
        self._handout = {w.slot for w in workers}
        self._report = report
        for worker in workers:
            self._ask(worker, self._reload_message(), partial(self._handed, worker))
        self._maybe_handed_out()

    def _handed(self, worker: Worker, answer: Message | None) -> None:
        self._took(worker, answer)
        if self._handout is not None:
            self._handout.discard(worker.slot)
            self._maybe_handed_out()

    def _maybe_handed_out(self) -> None:
        if self._handout is not None and not self._handout:
            self._handout = None
            self._report()
            self._next_reload()

    def _reload_message(self) -> Message:
        return ("reload", self.config.file, self.config.raw)

    def _took(self, worker: Worker, answer: Message | None) -> None:
        if answer is None or answer[0] != "reloaded":
            if worker.process.returncode is None and not self.stopping:  # not merely gone
                log.error("worker %d did not take the new configuration (no answer)", worker.slot)
        elif answer[1]:
            log.error("worker %d refused the new configuration: %s", worker.slot, answer[1])
        else:
            worker.generation = self.config.generation

    # --- Workers ------------------------------------------------------------------------------

    def _ask(
        self,
        worker: Worker,
        message: Message,
        on_answer: Callable[[Any], None],
        timeout_s: float = ASK_TIMEOUT_S,
    ) -> None:
        worker.channel.ask(message, on_answer, now=time.monotonic(), timeout_s=timeout_s)
        self._watch(worker)

    def _watch(self, worker: Worker) -> None:
        """Read its channel always; write to it while it has something to say."""
        write = selectors.EVENT_WRITE if worker.channel.wants_to_write else 0
        with contextlib.suppress(KeyError):  # not watched: gone already
            self._selector.modify(worker.channel.sock, selectors.EVENT_READ | write, worker)

    def _on_channel(self, worker: Worker, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            worker.channel.flush()
        if mask & selectors.EVENT_READ:
            messages = worker.channel.receive()
            if messages is None:  # it is exiting (or sent garbage): _reap restarts it
                self._forget(worker)
                return
            for message in messages:
                if message[0] == "ready" and not worker.answered:
                    self._ready(worker)
        self._watch(worker)

    def _ready(self, worker: Worker) -> None:
        worker.answered = True
        worker.accepting = True
        worker.next_ping = time.monotonic() + PING_INTERVAL_S
        if worker.generation != self.config.generation:  # a reload came while it started
            self._ask(worker, self._reload_message(), partial(self._took, worker))
        for message in self.faults.replay():  # the runtime faults the others have
            self._ask(worker, message, _nothing_with)

    def _forget(self, worker: Worker) -> None:
        """Its channel is closed or useless: stop watching it; its questions get None."""
        worker.accepting = False
        worker.answered = True
        with contextlib.suppress(KeyError):
            self._selector.unregister(worker.channel.sock)
        worker.channel.fail_all()

    def _heartbeat(self) -> None:
        """Ping the ready workers; kill one that leaves a question unanswered too long."""
        now = time.monotonic()
        for worker in list(self.workers.values()):
            if not worker.accepting or worker.process.returncode is not None:
                continue
            worker.channel.expire(now)
            since = worker.channel.waiting_since()
            # A worker taking a new configuration answers nothing else until it has (a
            # thousand rules: a third of a second): the reload's own deadline applies.
            limit = ASK_TIMEOUT_S if worker.channel.reloading else HUNG_AFTER_S
            if worker.channel.controlling:  # so does a journal being rendered
                limit = CONTROL_TIMEOUT_S
            if since is not None and now - since >= limit:
                self._kill_hung(worker, now - since)
            elif since is None and now >= worker.next_ping:
                worker.next_ping = now + PING_INTERVAL_S
                self._ask(worker, ("ping",), _nothing_with)

    def _kill_hung(self, worker: Worker, silent_s: float) -> None:
        log.error(
            "worker %d (pid %d) has not answered for %.1fs: killing it",
            worker.slot,
            worker.process.pid,
            silent_s,
        )
        self.hung_total += 1
        self._forget(worker)
        with contextlib.suppress(ProcessLookupError):
            worker.process.send_signal(signal.SIGKILL)  # _reap restarts it

    def _reap(self) -> None:
        now = time.monotonic()
        for worker in list(self.workers.values()):
            worker.channel.expire(now)
            if worker.process.returncode is not None:
                continue  # seen already
            code = worker.process.poll()
            if code is None:
                continue
            self._forget(worker)
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
        inherited = [theirs.fileno(), config_fd, *self._extra_fds]
        if self._listener is not None:
            env["TRIOPROXY_LISTEN_FD"] = str(self._listener.fileno())
            inherited.append(self._listener.fileno())
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "trioproxy", *self.worker_argv],
                env=env,
                pass_fds=inherited,
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
        worker = Worker(
            slot, process, time.monotonic(), WorkerChannel(ours), self.config.generation
        )
        self.workers[slot] = worker
        self._selector.register(ours, selectors.EVENT_READ, worker)

    def _abort(self) -> int:
        self.stopping = True
        self._stop_reloading()
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


def _nothing() -> None:
    """No report to make."""


def _nothing_with(answer: Message | None) -> None:
    """A ping's answer: its arrival is all that counts (`WorkerChannel.waiting_since`)."""


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
