"""The admin listener's harness endpoints decided without I/O: /journal and /faults as JSON,
every refusal a status and a message naming what was wrong."""

from __future__ import annotations

import json
from typing import Any

from trioproxy.config._faultconfig import parse_runtime_fault
from trioproxy.core._admincontrol import AdminControl, body_length
from trioproxy.core._faulttable import MAX_RUNTIME_FAULTS, FaultTable
from trioproxy.core._journal import Entry, Journal
from trioproxy.core._requestview import request_view


def _control(*, writable: bool = True, journal: bool = True) -> AdminControl:
    kept = Journal(5) if journal else None
    if kept is not None:
        kept.record(Entry(1, "GET", "/a", status=200))
        kept.record(Entry(2, "POST", "/b", status=503, faults=("slow",)))
    return AdminControl(kept, FaultTable(), parse_runtime_fault, writable)


def _ask(control: AdminControl, method: bytes, target: bytes, body: Any = b"") -> tuple[int, Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, content_type, answer = control.answer(method, target, raw)
    assert content_type == b"application/json"
    return status, json.loads(answer)


def test_a_fault_posted_as_json_is_listed_applied_and_removed() -> None:
    control = _control()
    posted = {"name": "api-503", "kind": "answer", "status": 503, "first": 2}
    status, added = _ask(
        control, b"POST", b"/faults", {**posted, "match": {"path_prefix": "/api/"}}
    )
    assert status == 201
    assert added == {
        "kind": "answer",
        "direction": "client",
        "at": "before_head",
        "status": 503,
        "first": 2,
        "name": "api-503",
        "match": {"path_prefix": "/api/"},
        "seen": 0,
        "applied": 0,
    }
    view = request_view(b"GET", b"/api/x", [(b"host", b"h")], "127.0.0.1")
    assert [s.fault.name for s in control.faults.select(view)] == ["api-503"]
    assert control.faults.select(request_view(b"GET", b"/else", [], "127.0.0.1")) == ()
    assert _ask(control, b"GET", b"/faults")[1]["faults"][0]["applied"] == 1
    assert _ask(control, b"DELETE", b"/faults/api%2D503")[0] == 200
    assert _ask(control, b"GET", b"/faults") == (200, {"faults": []})


def test_a_bad_fault_is_refused_with_the_problems_the_toml_would_get() -> None:
    status, answer = _ask(
        _control(), b"POST", b"/faults", {"kind": "latency", "match": {"path": "x"}}
    )
    assert status == 400
    assert answer["problems"] == [
        'fault.match.path: expected a path starting with "/", found "x"',
        "fault.delay_s: a latency fault needs delay_s (or jitter_s) above 0",
    ]
    status, answer = _ask(_control(), b"POST", b"/faults", b"{kind")
    assert status == 400 and answer["error"].startswith("fault: not JSON: Expecting property")


def test_two_faults_of_one_name_conflict_and_an_unknown_name_is_named() -> None:
    control = _control()
    assert _ask(control, b"POST", b"/faults", {"kind": "hang", "name": "h"})[0] == 201
    status, answer = _ask(control, b"POST", b"/faults", {"kind": "reset", "name": "h"})
    assert (status, answer["error"]) == (
        409,
        "a fault named 'h' is active already; remove it first",
    )
    status, answer = _ask(control, b"DELETE", b"/faults/nope")
    assert (status, answer["error"]) == (404, "no fault named 'nope'; active: h")
    assert _ask(control, b"DELETE", b"/faults") == (200, {"removed": ["h"]})


def test_the_runtime_fault_table_is_bounded() -> None:
    # Every request is tested against every runtime fault: the table's size bounds that work.
    control = _control()
    for n in range(MAX_RUNTIME_FAULTS):
        assert _ask(control, b"POST", b"/faults", {"kind": "hang", "name": f"f{n}"})[0] == 201
    status, answer = _ask(control, b"POST", b"/faults", {"kind": "hang", "name": "one more"})
    assert status == 409 and answer["error"].startswith(f"{MAX_RUNTIME_FAULTS} runtime faults")
    assert _ask(control, b"DELETE", b"/faults/f0")[0] == 200
    assert _ask(control, b"POST", b"/faults", {"kind": "hang", "name": "one more"})[0] == 201


def test_changing_faults_needs_admin_faults_on() -> None:
    status, answer = _ask(_control(writable=False), b"POST", b"/faults", {"kind": "hang"})
    assert status == 403 and "admin.faults = true" in answer["error"]
    assert _ask(_control(writable=False), b"GET", b"/faults")[0] == 200


def test_the_journal_as_json_filtered_by_the_query_and_cleared() -> None:
    control = _control()
    status, answer = _ask(control, b"GET", b"/journal?method=POST&status=503")
    assert status == 200
    assert (answer["recorded"], [e["seq"] for e in answer["entries"]]) == (2, [2])
    assert answer["entries"][0]["faults"] == ["slow"]
    assert _ask(control, b"GET", b"/journal?colour=red")[1]["error"].startswith(
        "unknown journal filter 'colour'; use method, path"
    )
    assert _ask(control, b"DELETE", b"/journal") == (200, {"cleared": 2})
    assert _ask(control, b"GET", b"/journal")[1]["entries"] == []
    status, answer = _ask(_control(journal=False), b"GET", b"/journal")
    assert status == 404 and "admin.journal_size" in answer["error"]


def test_methods_a_path_does_not_take_get_a_405_naming_those_it_does() -> None:
    control = _control()
    status, answer = _ask(control, b"PUT", b"/faults")
    assert (status, answer["error"]) == (
        405,
        "method not allowed; /faults takes GET, HEAD, POST, DELETE",
    )
    assert control.allowed(b"/faults/x") == b"DELETE"
    assert control.handles(b"/faults/x") and not control.handles(b"/faultsx")


def test_the_body_length_comes_from_content_length_and_chunked_is_refused() -> None:
    assert body_length(b"POST /faults HTTP/1.1\r\nHost: a\r\nContent-Length: 12") == 12
    assert body_length(b"GET /faults HTTP/1.1\r\nHost: a") == 0
    assert body_length(b"POST /faults HTTP/1.1\r\nTransfer-Encoding: chunked") == -1
