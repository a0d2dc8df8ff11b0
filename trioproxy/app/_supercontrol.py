"""``--workers N``: the harness endpoints (/faults, /journal) for the whole container (pure).

The supervisor keeps no journal and runs no fault: it relays each request to every worker
(`Supervisor.control`) and makes one answer of theirs here. Every worker decides alone, with
the same configuration, so they answer alike: a fault change is answered once every worker
has it (the rule a reload follows); a worker that did not answer, or answers otherwise,
makes the answer a 503 that names it. Lists are merged: ``GET /faults`` adds up each fault's
``seen`` and ``applied`` (and shows each worker's), ``GET /journal`` merges the entries in
the order they ended, each marked with its ``worker``, the newest ``size`` of them.

`FaultLedger` remembers the fault changes every worker took, so that a worker starting later
(a restart) is handed the same faults. Stdlib only: the supervisor imports neither trio nor
the configuration loader.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

__all__ = ["FaultLedger", "error", "merge"]

Answer = tuple[int, bytes, bytes]  # status, content type, body (as `_adminanswers`)
# A worker's answer: ("controlled", status, content_type, body, clock_offset_s), or None.
Controlled = tuple[Any, ...] | None

_JSON = b"application/json"
_TIMES = ("start_s", "first_byte_s", "end_s")


class FaultLedger:
    """The runtime faults every worker has, as the ``POST /faults`` bodies that added them,
    in the order they were added. Used on the supervisor's loop only."""

    __slots__ = ("_added",)

    def __init__(self) -> None:
        self._added: dict[str, bytes] = {}

    def __len__(self) -> int:
        return len(self._added)

    def note(self, message: tuple[Any, ...], answers: list[Controlled]) -> bool:
        """Keep the change ``message`` (``("control", method, target, body)``) made if every
        worker took it; True if it was a fault change every worker took."""
        _, method, target, body = message
        path = target.partition(b"?")[0]
        if method not in (b"POST", b"DELETE") or not path.startswith(b"/faults"):
            return False
        if not answers or any(a is None or a[1] not in (200, 201) for a in answers):
            return False
        if method == b"POST":
            assert answers[0] is not None
            name = _json(answers[0]).get("name")
            if isinstance(name, str):
                self._added[name] = body
        elif path == b"/faults":
            self._added.clear()
        else:
            self._added.pop(unquote(path[len(b"/faults/") :].decode("latin-1")), None)
        return True

    def replay(self) -> list[tuple[Any, ...]]:
        """The messages that give a new worker the faults the others have."""
        return [("control", b"POST", b"/faults", body) for body in self._added.values()]


def merge(method: bytes, target: bytes, answers: list[tuple[int, Controlled]]) -> Answer:
    """One answer for the container from each worker's (in slot order)."""
    if not answers:
        return error(503, "no worker is accepting (starting, restarting or draining)")
    silent = [slot for slot, a in answers if a is None]
    if silent:
        workers = ", ".join(str(slot) for slot in silent)
        changed = "" if method in (b"GET", b"HEAD") else "; the others may have taken the change"
        return error(503, f"worker(s) {workers} did not answer{changed}")
    got = [(slot, a) for slot, a in answers if a is not None]
    statuses = {a[1] for _, a in got}
    if len(statuses) > 1:
        each = [f"worker {slot}: {_message(a)}" for slot, a in got]
        return error(503, "the workers answered differently", each)
    first = got[0][1]
    status, content_type, body = first[1], first[2], first[3]
    if status != 200 or content_type != _JSON or method not in (b"GET", b"HEAD", b"DELETE"):
        return status, content_type, body  # an error, or an addition: the same from each
    path = target.partition(b"?")[0]
    if path == b"/journal":
        return _json_answer(_journal(method, got))
    if path == b"/faults" and method != b"DELETE":
        return _json_answer({"faults": _faults([(slot, _json(a)["faults"]) for slot, a in got])})
    if path.startswith(b"/faults/"):  # one removed: its counts from every worker
        return _json_answer(_faults([(slot, [_json(a)]) for slot, a in got])[0])
    return status, content_type, body  # every fault removed: the same list from each


def _journal(method: bytes, got: list[tuple[int, tuple[Any, ...]]]) -> dict[str, Any]:
    docs = [(slot, _json(a), a[4]) for slot, a in got]
    if method == b"DELETE":
        return {"cleared": sum(doc["cleared"] for _, doc, _ in docs)}
    entries = []
    for slot, doc, offset_s in docs:
        for entry in doc["entries"]:
            for key in _TIMES:  # the worker's event-loop clock -> time.monotonic()
                if entry.get(key) is not None:
                    entry[key] += offset_s
            entry["worker"] = slot
            entries.append(entry)
    entries.sort(key=lambda e: (e["end_s"], e["worker"], e["seq"]))
    size = docs[0][1]["size"]  # each worker's: the container's answer is as bounded
    return {
        "size": size,
        "workers": len(docs),
        "recorded": sum(doc["recorded"] for _, doc, _ in docs),
        "dropped": sum(doc["dropped"] for _, doc, _ in docs),
        "left_out": max(0, len(entries) - size),  # kept by the workers, beyond the newest size
        "entries": entries[-size:],
    }


def _faults(lists: list[tuple[int, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Each fault once (as the first worker shows it), its counts added up over the workers
    and shown for each (``first``/``every`` count per worker)."""
    merged: dict[str, dict[str, Any]] = {}
    for slot, faults in lists:
        for fault in faults:
            fresh = {**fault, "seen": 0, "applied": 0, "workers": []}
            into = merged.setdefault(fault["name"], fresh)
            into["seen"] += fault["seen"]
            into["applied"] += fault["applied"]
            into["workers"].append(
                {"worker": slot, "seen": fault["seen"], "applied": fault["applied"]}
            )
    return list(merged.values())


def _json(answer: tuple[Any, ...]) -> dict[str, Any]:
    import json  # here: the supervisor without an admin listener never parses JSON

    value = json.loads(answer[3])
    return value if isinstance(value, dict) else {}


def _message(answer: tuple[Any, ...]) -> str:
    """A worker's answer in a few words: its status, and its error if it gave one."""
    try:
        problem = str(_json(answer).get("error", ""))
    except ValueError:  # not JSON: a plain-text answer
        problem = bytes(answer[3]).decode("utf-8", "replace").strip()
    return f"{answer[1]} {problem}".strip()


def _json_answer(value: Any, status: int = 200) -> Answer:
    import json

    return status, _JSON, json.dumps(value, indent=1).encode("ascii") + b"\n"


def error(status: int, message: str, problems: list[str] | None = None) -> Answer:
    return _json_answer({"error": message, "problems": problems or [message]}, status)
