"""A worker as the supervisor sees it: its process and state, and its channel's asking end.

Plain sockets (no trio, no h11), like the supervisor, and never a blocking call: the
supervisor's loop owns every channel. A question is queued with what to do with its answer
(`WorkerChannel.ask`); the loop writes it out when the socket takes it (`flush`), reads what
arrives (`receive`) and matches each answer to the oldest open question (a worker answers one
question at a time, in order). A question unanswered by its deadline is answered None
(`expire`); its late answer, when it comes, is skipped.
"""

from __future__ import annotations

import socket
import subprocess
from collections import deque
from collections.abc import Callable

from ._channel import ChannelError, FrameBuffer, Message, frame

# A worker answers a question on its channel between two requests: milliseconds.
ASK_TIMEOUT_S = 5.0
# A harness endpoint relayed (/journal): a journal of 10,000 entries takes a second to render
# (in a thread of the worker's; 100,000 take ten).
CONTROL_TIMEOUT_S = 30.0
_ANSWERS = {"metrics": "metrics", "reload": "reloaded", "ping": "pong", "control": "controlled"}

OnAnswer = Callable[[Message | None], None]


class Question:
    __slots__ = ("deadline", "done", "expected", "on_answer", "sent_at")

    def __init__(self, expected: str, on_answer: OnAnswer, sent_at: float, deadline: float) -> None:
        self.expected = expected
        self.on_answer = on_answer
        self.sent_at = sent_at
        self.deadline = deadline
        self.done = False

    def answer(self, message: Message | None) -> None:
        if not self.done:
            self.done = True
            self.on_answer(message)


class WorkerChannel:
    """The supervisor's end of a worker's socketpair, non-blocking: questions out, answers in."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.buffer = FrameBuffer()
        self.questions: deque[Question] = deque()  # asked, in order, until answered
        self._out = bytearray()

    def ask(
        self, message: Message, on_answer: OnAnswer, *, now: float, timeout_s: float = ASK_TIMEOUT_S
    ) -> None:
        """Queue ``message``; ``on_answer`` gets the answer, or None by ``now + timeout_s``."""
        self._out += frame(message)
        self.questions.append(Question(_ANSWERS[message[0]], on_answer, now, now + timeout_s))
        self.flush()

    @property
    def wants_to_write(self) -> bool:
        return bool(self._out)

    def flush(self) -> None:
        """Write what the socket takes now."""
        while self._out:
            try:
                sent = self.sock.send(self._out)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # the worker is gone: its death is seen by the reaper
                self._out.clear()
                return
            del self._out[:sent]

    def receive(self) -> list[Message] | None:
        """Read what has arrived: the messages that answer no question (``("ready",)``), after
        handing the answers to their questions; None at end of file or on a stranger's bytes."""
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return []
        except OSError:
            return None
        if not data:
            return None
        self.buffer.feed(data)
        others = []
        try:
            while (message := self.buffer.next()) is not None:
                if message[0] in _ANSWERS.values():
                    self._answer(message)
                else:
                    others.append(message)
        except ChannelError:
            return None
        return others

    def _answer(self, message: Message) -> None:
        while self.questions:
            question = self.questions.popleft()
            if question.expected == message[0]:
                question.answer(message)
                return
            question.answer(None)  # answers come in order: that one was skipped

    def expire(self, now: float) -> None:
        for question in self.questions:
            if question.deadline <= now:
                question.answer(None)

    def next_deadline(self) -> float:
        return min((q.deadline for q in self.questions if not q.done), default=float("inf"))

    @property
    def reloading(self) -> bool:
        """A new configuration handed over is not yet taken (parsing it takes a while)."""
        return any(q.expected == "reloaded" and not q.done for q in self.questions)

    @property
    def controlling(self) -> bool:
        """A harness endpoint relayed is not yet answered (a journal takes a while)."""
        return any(q.expected == "controlled" and not q.done for q in self.questions)

    def waiting_since(self) -> float | None:
        """When the oldest question still unanswered was asked (timed out or not)."""
        return self.questions[0].sent_at if self.questions else None

    def fail_all(self) -> None:
        """The worker is gone: every open question is answered None."""
        while self.questions:
            self.questions.popleft().answer(None)
        self._out.clear()


class Worker:
    __slots__ = (
        "accepting",
        "answered",
        "channel",
        "generation",
        "next_ping",
        "process",
        "slot",
        "started_at",
    )

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
        self.next_ping = started_at
