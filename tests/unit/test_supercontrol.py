"""The supervisor's answer to /faults and /journal from its workers' answers (`_supercontrol`):
one answer when they agree, a 503 naming the worker when one is silent or differs, fault
counts added up, journals merged on one clock and bounded; the ledger a restarted worker is
handed."""

from __future__ import annotations

import json
import signal
import socket
import time
from types import SimpleNamespace
from typing import Any

from trioproxy.app._supercontrol import FaultLedger, merge
from trioproxy.app._supervisor import Supervisor
from trioproxy.app._workerlink import Worker, WorkerChannel

JSON = b"application/json"


def _answer(status: int, value: Any, offset_s: float = 0.0) -> tuple[Any, ...]:
    return ("controlled", status, JSON, json.dumps(value).encode(), offset_s)


def _entry(seq: int, end_s: float) -> dict[str, Any]:
    return {"seq": seq, "start_s": end_s - 1, "first_byte_s": None, "end_s": end_s}


def _journal(size: int, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"size": size, "recorded": len(entries), "dropped": 0, "entries": list(entries)}


def test_journals_merge_on_one_clock_in_the_order_they_ended_and_bounded() -> None:
    # Worker 0's loop clock is 100 s behind time.monotonic(), worker 1's 50 s ahead.
    zero = _answer(200, _journal(3, _entry(1, 10.0), _entry(2, 30.0)), offset_s=100.0)
    one = _answer(200, _journal(3, _entry(1, 70.0), _entry(2, 165.0)), offset_s=-50.0)
    status, _, body = merge(b"GET", b"/journal", [(0, zero), (1, one)])
    doc = json.loads(body)
    assert status == 200
    # Ends at 110, 130 (worker 0) and 20, 115 (worker 1): the newest 3 of the 4, in order.
    assert [(e["worker"], e["seq"], e["end_s"]) for e in doc["entries"]] == [
        (0, 1, 110.0),
        (1, 2, 115.0),
        (0, 2, 130.0),
    ]
    assert doc["entries"][0]["start_s"] == 109.0 and doc["entries"][0]["first_byte_s"] is None
    assert (doc["size"], doc["workers"], doc["recorded"], doc["left_out"]) == (3, 2, 4, 1)


def test_a_silent_worker_makes_a_503_that_names_it() -> None:
    added = _answer(201, {"name": "x"})
    status, _, body = merge(b"POST", b"/faults", [(0, added), (1, None)])
    assert status == 503
    assert json.loads(body)["error"] == (
        "worker(s) 1 did not answer; the others may have taken the change"
    )


def test_workers_that_answer_differently_make_a_503_with_each_answer() -> None:
    added = _answer(201, {"name": "x"})
    taken = _answer(409, {"error": "a fault named 'x' is active already"})
    status, _, body = merge(b"POST", b"/faults", [(0, added), (1, taken)])
    assert status == 503
    assert json.loads(body)["problems"] == [
        "worker 0: 201",
        "worker 1: 409 a fault named 'x' is active already",
    ]


def test_fault_counts_add_up_over_the_workers_and_show_each() -> None:
    def listed(seen: int, applied: int) -> tuple[Any, ...]:
        return _answer(200, {"faults": [{"name": "x", "seen": seen, "applied": applied}]})

    status, _, body = merge(b"GET", b"/faults", [(0, listed(3, 1)), (1, listed(4, 2))])
    (fault,) = json.loads(body)["faults"]
    assert (status, fault["seen"], fault["applied"]) == (200, 7, 3)
    assert fault["workers"] == [
        {"worker": 0, "seen": 3, "applied": 1},
        {"worker": 1, "seen": 4, "applied": 2},
    ]


def test_no_worker_accepting_is_a_503() -> None:
    assert merge(b"GET", b"/faults", [])[0] == 503


def test_the_ledger_keeps_what_every_worker_took_in_order() -> None:
    ledger = FaultLedger()
    ok = _answer(201, {"name": "a"})
    assert ledger.note(("control", b"POST", b"/faults", b"{a}"), [ok, ok])
    assert not ledger.note(("control", b"POST", b"/faults", b"{b}"), [ok, None])
    ledger.note(("control", b"POST", b"/faults", b"{c}"), [_answer(201, {"name": "c"})])
    assert [m[3] for m in ledger.replay()] == [b"{a}", b"{c}"]
    assert not ledger.note(("control", b"GET", b"/faults", b""), [ok])
    ledger.note(("control", b"DELETE", b"/faults/a", b""), [_answer(200, {"name": "a"})])
    assert ledger.replay() == [("control", b"POST", b"/faults", b"{c}")]
    ledger.note(("control", b"DELETE", b"/faults", b""), [_answer(200, {"removed": ["c"]})])
    assert ledger.replay() == []


def _stale_worker(
    question: tuple[Any, ...], asked_s_ago: float, sockets: list[socket.socket]
) -> tuple[Worker, list[int]]:
    """A worker (slot 0) that has left ``question`` unanswered for ``asked_s_ago``; and the
    signals it is sent."""
    ours, theirs = socket.socketpair()
    sockets += (ours, theirs)
    signals: list[int] = []
    process = SimpleNamespace(returncode=None, pid=4242, send_signal=signals.append)
    channel = WorkerChannel(ours)
    channel.ask(question, lambda answer: None, now=time.monotonic() - asked_s_ago, timeout_s=60)
    worker = Worker(0, process, 0.0, channel, 0)  # type: ignore[arg-type]
    worker.accepting = True
    return worker, signals


def test_a_worker_rendering_a_journal_is_not_taken_for_hung() -> None:
    supervisor = Supervisor(["--listen=127.0.0.1:0"], 1, stop_timeout_s=1)
    sockets: list[socket.socket] = []
    try:
        # Ten thousand entries take a second or more: longer than a ping may wait.
        worker, signals = _stale_worker(("control", b"GET", b"/journal", b""), 3.0, sockets)
        supervisor.workers = {0: worker}
        supervisor._heartbeat()
        assert signals == [] and worker.accepting
        # A worker silent as long on a ping is hung.
        worker, signals = _stale_worker(("ping",), 3.0, sockets)
        supervisor.workers = {0: worker}
        supervisor._heartbeat()
        assert signals == [signal.SIGKILL] and not worker.accepting
    finally:
        for sock in sockets:
            sock.close()
