"""A worker as the supervisor sees it: its process and state, and its channel's asking end.

Plain sockets and threads (no trio, no h11), like the supervisor: a question goes to one
worker (`WorkerChannel.ask`) or to all at once (`ask_all`), each answer within its deadline.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time

from ._channel import ChannelError, FrameBuffer, Message, frame

# A worker answers a question on its channel between two requests: milliseconds.
_ASK_TIMEOUT_S = 5.0
_ANSWERS = {"metrics": "metrics", "reload": "reloaded"}


class WorkerChannel:
    """The supervisor's end of a worker's socketpair: one question and answer at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = FrameBuffer()
        self._lock = threading.Lock()

    def ask(self, message: Message, timeout_s: float = _ASK_TIMEOUT_S) -> Message | None:
        """Send a question and wait for its answer; None if none came in time. An answer
        to an earlier question that timed out is skipped (each kind has its own answer)."""
        expected = _ANSWERS[message[0]]
        with self._lock:
            deadline = time.monotonic() + timeout_s
            try:
                self.sock.settimeout(timeout_s)
                self.sock.sendall(frame(message))
                while True:
                    while (answer := self.buffer.next()) is None:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            return None
                        self.sock.settimeout(left)
                        data = self.sock.recv(65536)
                        if not data:
                            return None
                        self.buffer.feed(data)
                    if answer[0] == expected:
                        return answer
            except (OSError, ChannelError):
                return None


class Worker:
    __slots__ = ("accepting", "answered", "channel", "generation", "process", "slot", "started_at")

    def __init__(
        self,
        slot: int,
        process: subprocess.Popen[bytes],
        started_at: float,
        channel: WorkerChannel,
        generation: int,  # of the configuration it was started with, or last took
    ) -> None:
        self.slot = slot
        self.process = process
        self.started_at = started_at
        self.channel = channel
        self.generation = generation
        self.accepting = False
        self.answered = False  # said ready (or gone before it could)


def ask_all(workers: list[Worker], message: Message) -> list[Message | None]:
    """Ask every worker at once (a thread each), and wait for all the answers."""
    answers: list[Message | None] = [None] * len(workers)

    def ask(index: int) -> None:
        answers[index] = workers[index].channel.ask(message)

    threads = [threading.Thread(target=ask, args=(i,), daemon=True) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()  # each ask has its own deadline
    return answers
