"""The supervisor's heartbeat decision, on a real channel and a stand-in process: a worker
silent past HUNG_AFTER_S is killed, one busy taking a new configuration gets the reload's
own deadline."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from trioproxy.app._supervisor import HUNG_AFTER_S, Supervisor
from trioproxy.app._workerlink import ASK_TIMEOUT_S, Worker, WorkerChannel


class Process:
    pid = 4242
    returncode: int | None = None

    def __init__(self) -> None:
        self.signals: list[int] = []

    def send_signal(self, signum: int) -> None:
        self.signals.append(signum)


@pytest.fixture
def worker() -> Iterator[Worker]:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        process: Any = Process()
        worker = Worker(0, process, time.monotonic(), WorkerChannel(ours), 0)
        worker.accepting = worker.answered = True
        yield worker


def _supervise(worker: Worker) -> Supervisor:
    supervisor = Supervisor([], 1, stop_timeout_s=1)
    supervisor.workers = {0: worker}
    return supervisor


def test_a_worker_silent_past_the_limit_is_killed(worker: Worker) -> None:
    supervisor = _supervise(worker)
    worker.channel.ask(("ping",), lambda answer: None, now=time.monotonic() - HUNG_AFTER_S)
    supervisor._heartbeat()
    assert worker.process.signals == [signal.SIGKILL]  # type: ignore[attr-defined]
    assert not worker.accepting and supervisor.hung_total == 1


def test_a_worker_taking_a_reload_gets_the_reloads_deadline(worker: Worker) -> None:
    supervisor = _supervise(worker)
    asked = time.monotonic() - HUNG_AFTER_S
    worker.channel.ask(("reload", "f", None), lambda answer: None, now=asked)
    worker.channel.ask(("ping",), lambda answer: None, now=asked)
    supervisor._heartbeat()
    assert worker.process.signals == [] and worker.accepting  # type: ignore[attr-defined]
    worker.channel.questions[0].sent_at -= ASK_TIMEOUT_S
    worker.channel.questions[0].deadline -= ASK_TIMEOUT_S  # and past the reload's deadline
    supervisor._heartbeat()
    assert worker.process.signals == [signal.SIGKILL]  # type: ignore[attr-defined]


def test_a_worker_that_answers_is_pinged_again(worker: Worker) -> None:
    supervisor = _supervise(worker)
    worker.next_ping = 0.0
    supervisor._heartbeat()
    assert [q.expected for q in worker.channel.questions] == ["pong"]
    assert worker.process.signals == []  # type: ignore[attr-defined]
