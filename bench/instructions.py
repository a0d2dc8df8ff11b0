"""Instructions per request through trioproxy, counted by valgrind's callgrind; or, with
``--opcodes``, the Python bytecodes it executes per request, per function.

``python bench/instructions.py [--requests N] [--connections C] [--parser h11|h11-mypyc]
[--baseline] [--config-dir DIR] [--opcodes [--top N]]``

Wall-clock throughput means nothing on a shared machine; the number of instructions the
proxy executes per request barely moves with the load around it. The proxy runs under
``valgrind --tool=callgrind`` (defaults: an empty configuration directory, so every default
feature is on, and the JSON access log to /dev/null, as in bench/run.py; ``--config-dir``
measures a configuration of your own, copied for each run: a rule with a hook, say); this
script is the origin (a 1 KiB keep-alive answer, from a thread: its instructions are not
counted) and the client (C keep-alive connections, each sending its share of the requests
one after another).

Two runs, ``--warmup`` requests and ``--warmup + N`` requests: the difference, divided by N,
cancels start-up, imports and shutdown. Compare numbers only from the same machine, Python
and parser; run it before and after a change with the same arguments. The proxy is whatever
``import trioproxy`` finds from a scratch directory: ``PYTHONPATH=DIR`` measures another tree
(an unpacked ``git archive main``, or the compiled copy ``build/compiled``).

Why bytecodes: callgrind counts every instruction alike, but an instruction of CPython's
bytecode loop costs more time than one of a tight C loop (h11's validation, a regex). The
baseline forwarder and trioproxy ran about as many instructions per request (614k against
633k) while trioproxy took 1.20 x the CPU time, and ran 1.49 x the bytecodes (4,868 against
3,263): perf put most of the gap in ``_PyEval_EvalFrameDefault``. ``--opcodes`` runs the proxy
under a tracer (``bench/_opcount.py``; the main thread only) instead of valgrind, and prints
the bytecodes and Python calls per request, in total and for the ``--top`` functions.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

BODY = b"x" * 1024
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY
)
READY_RE = re.compile(rb"listening on (\S+):(\d+)")
BASELINE = Path(__file__).resolve().parent / "baseline.py"
OPCOUNT = Path(__file__).resolve().parent / "_opcount.py"


def _serve_origin(listener: socket.socket) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=_origin_connection, args=(conn,), daemon=True).start()


def _origin_connection(conn: socket.socket) -> None:
    with conn:
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            _, _, buf = buf.partition(b"\r\n\r\n")  # GETs only: no request body
            conn.sendall(RESPONSE)


def _read_response(sock: socket.socket, buf: bytes) -> tuple[bytes, bool]:
    """The bytes after the response, and whether the proxy closes the connection."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("proxy closed the connection")
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise ConnectionError(f"unexpected answer: {head[:80]!r}")
    length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
    while len(rest) < length:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("proxy closed the connection mid-body")
        rest += data
    return rest[length:], b"\r\nconnection: close" in head.lower()


def _client(port: int, count: int, errors: list[BaseException]) -> None:
    request = b"GET /1k HTTP/1.1\r\nHost: bench\r\nUser-Agent: instructions\r\n\r\n"
    try:
        left = count
        while left:  # a new connection when the proxy ends one (keepalive_requests)
            with socket.create_connection(("127.0.0.1", port), timeout=600) as sock:
                buf, closing = b"", False
                while left and not closing:
                    sock.sendall(request)
                    buf, closing = _read_response(sock, buf)
                    left -= 1
    except BaseException as exc:
        errors.append(exc)


def _drive(port: int, requests: int, connections: int) -> None:
    errors: list[BaseException] = []
    shares = [requests // connections + (i < requests % connections) for i in range(connections)]
    threads = [threading.Thread(target=_client, args=(port, n, errors)) for n in shares if n]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"client failed: {errors[0]!r}")


def _one_run(args: argparse.Namespace, origin_port: int, requests: int) -> Counts:
    """What one proxy process that served ``requests`` requests executed: its total
    instructions, or (``--opcodes``) its bytecodes and calls per function."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / ("opcodes.tsv" if args.opcodes else "callgrind.out")
        config = Path(tmp) / "config"
        if args.config_dir is not None:
            shutil.copytree(args.config_dir, config)
        else:
            config.mkdir()
        # No bytecode written: a first run that wrote it would make the second one's imports
        # cheaper, and the difference would no longer be the requests' alone.
        env = dict(os.environ, PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1")
        if args.parser:
            env["TRIOPROXY_PARSER"] = args.parser
        counter = (
            [str(OPCOUNT), str(out)]
            if args.opcodes
            else ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *args.valgrind_arg]
        )
        if args.opcodes:
            counter.insert(0, sys.executable)
        else:
            counter.append(sys.executable)
        argv = [
            *counter,
            *(
                [str(BASELINE), "--listen", "127.0.0.1:0", "--upstream", f"127.0.0.1:{origin_port}"]
                if args.baseline
                else [
                    "-m",
                    "trioproxy",
                    "--listen",
                    "127.0.0.1:0",
                    "--upstream",
                    f"127.0.0.1:{origin_port}",
                    "--config-dir",
                    str(config),
                    "--workers",
                    "1",
                ]
            ),
        ]
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            cwd=tmp,  # not the project directory: `-m` puts the working directory on sys.path
            start_new_session=True,
        )
        try:
            port = _wait_ready(proc)
            _drive(port, requests, args.connections)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if args.opcodes:
            if not out.exists():
                raise SystemExit(f"no opcode counts; proxy stderr:\n{err.decode()[-2000:]}")
            return _read_opcodes(out.read_text(encoding="utf-8"))
        match = re.search(rb"(?m)^summary: (\d+)", out.read_bytes()) if out.exists() else None
        if match is None:
            raise SystemExit(f"no callgrind summary; proxy stderr:\n{err.decode()[-2000:]}")
        return int(match.group(1))


# A run's counts: total instructions, or bytecodes and calls by function.
Counts = int | tuple["Counter[str]", "Counter[str]"]


def _read_opcodes(text: str) -> tuple[Counter[str], Counter[str]]:
    """bench/_opcount.py's lines as (bytecodes, calls) by function, its file path shortened
    to what follows site-packages/ or the tree's root."""
    root = str(Path(__file__).resolve().parent.parent) + "/"
    opcodes: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    for line in text.splitlines():
        ops, called, where = line.split("\t", 2)
        where = where.rpartition("site-packages/")[2].removeprefix(root)
        opcodes[where] += int(ops)
        calls[where] += int(called)
    return opcodes, calls


def opcodes_report(
    before: tuple[Counter[str], Counter[str]],
    after: tuple[Counter[str], Counter[str]],
    requests: int,
    top: int,
) -> list[str]:
    """Bytecodes and calls per request, in total and for the ``top`` functions that ran the
    most, from two runs ``requests`` requests apart."""
    opcodes = after[0].copy()
    opcodes.subtract(before[0])
    calls = after[1].copy()
    calls.subtract(before[1])
    lines = [
        f"{opcodes.total() / requests:,.0f} bytecodes and {calls.total() / requests:,.1f} "
        f"Python calls per request, in {sum(1 for n in opcodes.values() if n >= requests / 2)} "
        "functions (those running at least every other request)",
        "bytecodes  calls  function",
    ]
    for where, n in opcodes.most_common(top):
        lines.append(f"{n / requests:9.1f} {calls[where] / requests:6.2f}  {where}")
    return lines


def _wait_ready(proc: subprocess.Popen[bytes]) -> int:
    assert proc.stderr is not None
    deadline = time.monotonic() + 300
    for line in proc.stderr:
        if match := READY_RE.search(line):
            # The rest of stderr goes on being read, or a chatty proxy would block on it.
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return int(match.group(2))
        if time.monotonic() > deadline:
            break
    raise SystemExit("the proxy never said 'listening on HOST:PORT'")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="measured requests")
    parser.add_argument("--warmup", type=int, default=200, help="requests in both runs")
    parser.add_argument("--connections", type=int, default=1, help="client connections")
    parser.add_argument("--parser", choices=("h11", "h11-mypyc"), help="TRIOPROXY_PARSER")
    parser.add_argument(
        "--baseline", action="store_true", help="measure bench/baseline.py, not trioproxy"
    )
    parser.add_argument(
        "--config-dir", type=Path, help="the proxy's configuration directory (default: empty)"
    )
    parser.add_argument(
        "--valgrind-arg", action="append", default=[], help="an extra valgrind option"
    )
    parser.add_argument(
        "--opcodes",
        action="store_true",
        help="count Python bytecodes per request by function, not instructions",
    )
    parser.add_argument("--top", type=int, default=40, help="functions listed by --opcodes")
    args = parser.parse_args()
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    threading.Thread(target=_serve_origin, args=(listener,), daemon=True).start()
    origin_port = listener.getsockname()[1]
    base = _one_run(args, origin_port, args.warmup)
    total = _one_run(args, origin_port, args.warmup + args.requests)
    if isinstance(base, tuple) and isinstance(total, tuple):
        print("\n".join(opcodes_report(base, total, args.requests, args.top)))
        return
    assert isinstance(base, int) and isinstance(total, int)
    per_request = (total - base) / args.requests
    print(
        f"{per_request:,.0f} instructions per request "
        f"({args.requests} requests, {args.connections} connection(s), "
        f"parser {args.parser or 'default'}{', baseline' if args.baseline else ''}; "
        f"runs: {base:,} and {total:,})"
    )


if __name__ == "__main__":
    main()
