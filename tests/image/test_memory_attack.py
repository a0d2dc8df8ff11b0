"""The image at the memory limit it ships with (.section-proxy.yaml: 256 MiB, one CPU) under
an attack of connections that each make the proxy buffer all the default limits allow
(`_attack.py`): it is not OOM-killed, and another client is still served.

Each process fits ``limits.max_connections`` to the container's memory limit (cgroup
``memory.max`` or ``memory.limit_in_bytes``) unless the configuration sets it. The attack
opens far more connections than fit; the ones beyond wait in the kernel's backlog until a
slot frees. Without the fit the kernel OOM-kills the proxy: a single process is PID 1, so
the container ends (State.OOMKilled); a worker of ``--workers N`` is killed and replaced,
which only the cgroup's ``oom_kill`` count shows. Both are checked.

The body and send deadlines are shortened from 60 s to 10 s (the head's default) so that
slots turn over within the test's time: an attacker's connection holds its memory as long as
the deadline lets it, then the attacker opens another, so shorter deadlines change how often
memory is taken and given back, not how much one connection holds. Measured here: without
the fit the proxy is OOM-killed within 11 s; with it the peak is 113 MiB and the other
client is served after 28 s in the backlog.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .support import PROXY_ADDR, REPO, Chain, Docker, open_chain, run

pytestmark = [pytest.mark.image, pytest.mark.timeout(900)]

MEMORY = "256m"  # .section-proxy.yaml's limits (test_section_module checks the file)
CPUS = "1"
ATTACK_CONNECTIONS = int(os.environ.get("TRIOPROXY_ATTACK_CONNECTIONS", "3000"))
# Half of them hold a head and a buffered body, the costliest (a quarter each the others).
ATTACK_KINDS = os.environ.get("TRIOPROXY_ATTACK_KINDS", "head,body,body,read")
HOLD_S = float(os.environ.get("TRIOPROXY_ATTACK_HOLD_S", "10"))
CONFIG = f"""\
[timeouts]
client_header_s = {HOLD_S}
client_body_s = {HOLD_S}
client_send_s = {HOLD_S}
"""
ATTACK_S = 300.0  # at most: the test stops it once it has held long enough
HOLD_REPORTS = 15

# The next hop: answers any request (its body read) with 64 KiB for /big, else 3 bytes.
NEXT_HOP_SCRIPT = """
import asyncio

BIG = b"x" * 65536

async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\\r\\n\\r\\n")
            length = 0
            for line in head.split(b"\\r\\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length:
                await reader.readexactly(length)
            body = BIG if head.split(b" ", 2)[1].startswith(b"/big") else b"ok\\n"
            writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(body) + body)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
        pass
    finally:
        writer.close()

async def main():
    server = await asyncio.start_server(handle, "0.0.0.0", 80, limit=1 << 20, backlog=4096)
    print("next-hop: ready", flush=True)
    await server.serve_forever()

asyncio.run(main())
"""

PROBE_SCRIPT = """
import http.client, sys, time
started = time.monotonic()
conn = http.client.HTTPConnection(sys.argv[1], 80, timeout=float(sys.argv[2]))
conn.request("GET", "/probe", headers={"Host": "probe.test"})
response = conn.getresponse()
print(response.status, response.read().decode(), round(time.monotonic() - started, 2))
"""


def memory_files(pid: int) -> tuple[Path, Path]:
    """``pid``'s memory cgroup, as the host sees it: its peak-use file and its events file
    (which counts OOM kills: docker's State.OOMKilled says nothing until the container
    exits, and nothing at all of a worker killed and replaced)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):  # v1
            group = Path("/sys/fs/cgroup/memory", path.lstrip("/"))
            return group / "memory.max_usage_in_bytes", group / "memory.oom_control"
    group = Path("/sys/fs/cgroup", line.split(":", 2)[2].lstrip("/"))  # v2: the one "0::" line
    return group / "memory.peak", group / "memory.events"


def oom_kills(events: Path) -> int:
    for line in events.read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            return int(value)
    pytest.fail(f"{events} has no oom_kill count: {events.read_text()!r}", pytrace=False)


def state(docker: Docker, container: str) -> dict[str, object]:
    text = docker("inspect", "-f", "{{json .State}}", container, timeout=15).stdout
    loaded: dict[str, object] = json.loads(text)
    return loaded


def probe(chain: Chain) -> str:
    """One GET from the next hop's namespace (another client than the attacker's): "STATUS
    BODY SECONDS", or how it failed."""
    client = [sys.executable, "-c", PROBE_SCRIPT, PROXY_ADDR, "90"]
    proc = run(["nsenter", "-t", str(chain.next_hop_pid), "-n", *client], timeout=120, check=False)
    return " ".join(proc.stdout.split()) or proc.stderr.strip().splitlines()[-1]


def test_an_attack_at_the_shipped_memory_limit_neither_kills_the_proxy_nor_locks_others_out(
    docker: Docker, image: str, tmp_path: Path
) -> None:
    config = tmp_path / "proxy_config"
    config.mkdir()
    config.chmod(0o755)  # readable by the image's non-root user, whatever the umask
    (config / "trioproxy.toml").write_text(CONFIG)
    (config / "trioproxy.toml").chmod(0o644)
    limits = ("--memory", MEMORY, "--memory-swap", MEMORY, "--cpus", CPUS)
    mount = ("--volume", f"{config}:/opt/proxy_config:ro")
    attack_errors = (tmp_path / "attack.err").open("w")
    with attack_errors, open_chain(docker, image, NEXT_HOP_SCRIPT, *limits, *mount) as chain:
        attacker = subprocess.Popen(
            [
                "nsenter", "-t", str(chain.proxy_pid), "-n",
                sys.executable, str(REPO / "tests" / "image" / "_attack.py"),
                PROXY_ADDR, "80", str(ATTACK_CONNECTIONS), str(ATTACK_S), ATTACK_KINDS,
            ],
            stdout=subprocess.PIPE,
            stderr=attack_errors,
            text=True,
        )  # fmt: skip
        peak_file, events_file = memory_files(chain.proxy_pid)
        reports: list[dict[str, Any]] = []
        try:
            assert attacker.stdout is not None
            # Held: nearly all the attack's connections open (accepted, or in the backlog),
            # then HOLD_REPORTS more of its one-a-second reports while the proxy buffers.
            for line in attacker.stdout:
                reports.append(json.loads(line))
                held = [r for r in reports if sum(r["open"].values()) >= ATTACK_CONNECTIONS * 0.9]
                if len(held) >= HOLD_REPORTS or not docker.running(chain.proxy):
                    break
            answer = probe(chain)
            during = state(docker, chain.proxy)
            # The cgroup goes with the container: then State says what happened.
            killed = oom_kills(events_file) if events_file.is_file() else None
        finally:
            attacker.kill()
            attacker.communicate(timeout=60)
        err = (tmp_path / "attack.err").read_text()
        peak = int(peak_file.read_text()) if peak_file.is_file() else -1
        # Not the attack's own lines (a 408 or a closed head each): what else happened.
        lines = docker.logs(chain.proxy)[1].splitlines()
        logs = "\n".join(line for line in lines if " INFO " not in line)[-3000:]
        print(f"attack: {reports[-1] if reports else err[-2000:]}")
        print(f"peak {peak / 2**20:.1f} MiB, {killed} OOM kills; probe {answer}\n{logs}")
        assert during["OOMKilled"] is False and during["Running"] is True, (during, logs)
        assert killed == 0, f"{killed} OOM kills in the proxy's container\n{logs}"
        assert answer.startswith("200 ok"), (answer, logs)
        assert len(reports) >= HOLD_REPORTS, (reports[-1:], err[-2000:])
        after = state(docker, chain.proxy)
        assert after["OOMKilled"] is False and after["Running"] is True, (after, logs)
        assert "fitted to the memory limit" in chain.ready_stderr, chain.ready_stderr
