"""The container image, built from the real Dockerfile and run the way the Section platform runs it.

Rules of this module: it needs root (veth pairs, nsenter) and a Docker engine: any engine that
answers (``DOCKER_HOST`` or the default socket), else a private dockerd started with the
workspace's ``shared/docker/start-dockerd.sh`` where there is one (docs/image.md). Both
containers run with ``--network none`` and are joined only by a veth pair whose addresses
(10.253.0.1/30 and .2) exist inside those two network namespaces and nowhere else; nothing is
routed out of them; every step has a deadline; containers and veths are removed in ``finally``.

Build paths: the wheelhouse (offline, as CI builds) is tested, and so is its refusal of a
wheelhouse built from other sources; the clean-clone build from the index needs network inside
builds and runs only with ``TRIOPROXY_IMAGE_INDEX_BUILD=1``.

Skipped, with the reason and how to run them, only where no Docker engine can be used (not
root, none answering and none to start); ``TRIOPROXY_IMAGE_TEST_REQUIRED=1`` turns that skip
into a failure. Env: ``TRIOPROXY_SHARED_DIR`` (default: ``shared`` beside the repo),
``DOCKERD_DIR`` (that of start-dockerd.sh), ``TRIOPROXY_KEEP_DOCKERD=1`` (leave a dockerd this
module started running).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .support import (
    PROXY_ADDR,
    REPO,
    Chain,
    Docker,
    open_chain,
    run,
    wait_for,
)

# Cold, the first test's setup installs docker.io, makes the base image and builds the image.
pytestmark = [pytest.mark.image, pytest.mark.timeout(900)]

READY_TEXT = "trioproxy: listening on 0.0.0.0:80, upstream next-hop:80"
CLIENT_HEADERS = {  # what the platform guarantees on every request (proxy contract)
    "X-Forwarded-For": "203.0.113.7",
    "True-Client-IP": "203.0.113.7",
    "X-Forwarded-Proto": "https",
}

# The next hop: an HTTP/1.1 origin that answers every GET with what it received, as JSON.
NEXT_HOP_SCRIPT = """
import http.server, json, sys

class Origin(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        seen = {"origin": "next-hop", "path": self.path, "headers": self.headers.items()}
        body = json.dumps(seen).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        sys.stderr.write("next-hop: " + format % args + "\\n")

server = http.server.ThreadingHTTPServer(("0.0.0.0", 80), Origin)
print("next-hop: ready", flush=True)
server.serve_forever()
"""

# A client run inside a network namespace (nsenter): argv = address, host, path...; the paths
# go over one keep-alive connection; prints one JSON object per response.
CLIENT_SCRIPT = """
import http.client, json, sys

address, host, *paths = sys.argv[1:]
headers = json.loads(sys.stdin.read())
conn = http.client.HTTPConnection(address, 80, timeout=10)
for path in paths:
    conn.request("GET", path, headers={"Host": host, **headers})
    response = conn.getresponse()
    body = response.read().decode("utf-8", "replace")
    print(json.dumps({"status": response.status, "body": body}))
conn.close()
"""


def get(chain: Chain, from_pid: int, host: str, *paths: str) -> list[dict[str, Any]]:
    """GET ``paths`` over one connection to the proxy's public address, sent from inside
    the network namespace of ``from_pid``."""
    client = [sys.executable, "-c", CLIENT_SCRIPT, PROXY_ADDR, host, *paths]
    proc = run(
        ["nsenter", "-t", str(from_pid), "-n", *client],
        stdin=json.dumps(CLIENT_HEADERS),
        timeout=30,
    )
    return [json.loads(line) for line in proc.stdout.splitlines()]


@pytest.fixture
def chain(docker: Docker, image: str) -> Iterator[Chain]:
    # As the platform runs it: no arguments, no extra privileges or sysctls.
    with open_chain(docker, image, NEXT_HOP_SCRIPT) as opened:
        yield opened


def access_lines(stdout: str) -> list[dict[str, Any]]:
    """Every stdout line, each of which must be a JSON object (the platform's access log)."""
    lines = []
    for line in stdout.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"stdout line is not JSON (only access lines belong there): {line!r}")
        assert isinstance(record, dict), f"stdout line is not a JSON object: {line!r}"
        lines.append(record)
    return lines


def test_image_config(docker: Docker, image: str) -> None:
    config = json.loads(
        docker("image", "inspect", "-f", "{{json .Config}}", image, timeout=15).stdout
    )
    assert config["User"].split(":")[0] not in ("", "0", "root")
    assert "80/tcp" in config["ExposedPorts"]
    # exec form, so that trioproxy itself is PID 1 and receives docker stop's SIGTERM
    assert config["Entrypoint"] == ["/opt/trioproxy/bin/trioproxy"]
    assert not config.get("Cmd")  # no default arguments: the contract's defaults apply


def test_proxies_logs_and_stops_cleanly(chain: Chain) -> None:
    docker = chain.docker
    assert READY_TEXT in chain.ready_stderr

    # PID 1 is trioproxy itself (no shell in between), not running as root.
    cmdline = Path(f"/proc/{chain.proxy_pid}/cmdline").read_bytes().split(b"\0")
    assert b"/opt/trioproxy/bin/trioproxy" in cmdline, cmdline
    status = Path(f"/proc/{chain.proxy_pid}/status").read_text()
    for key in ("Uid", "Gid"):
        ids = re.search(rf"^{key}:\s+(.*)$", status, re.MULTILINE)
        assert ids is not None
        assert "0" not in ids.group(1).split(), f"{key}: {ids.group(1)}"

    # Two requests over one keep-alive connection from inside the proxy's namespace, then one
    # arriving over the veth from the peer's namespace, like traffic from the platform.
    responses = get(chain, chain.proxy_pid, "www.example.test", "/first", "/second?x=1")
    responses += get(chain, chain.next_hop_pid, "other.example.test", "/third")
    for response, path in zip(responses, ("/first", "/second?x=1", "/third"), strict=True):
        assert response["status"] == 200, response
        seen = json.loads(response["body"])
        assert seen["origin"] == "next-hop"
        assert seen["path"] == path

    def three_lines() -> list[dict[str, Any]] | None:
        lines = access_lines(docker.logs(chain.proxy)[0])
        return lines if len(lines) >= 3 else None

    lines = wait_for(three_lines, timeout=15, what="3 access-log lines on stdout")
    for line, host in zip(
        lines, ("www.example.test", "www.example.test", "other.example.test"), strict=True
    ):
        assert str(line["status"]) == "200", line
        assert line["hostname"] == host, line
        assert int(str(line["bytes"])) > 0, line

    # docker stop: SIGTERM to PID 1, which drains and exits 0 well before the SIGKILL.
    started = time.monotonic()
    docker("stop", "--time", "30", chain.proxy, timeout=60)
    took = time.monotonic() - started
    state = json.loads(docker("inspect", "-f", "{{json .State}}", chain.proxy, timeout=15).stdout)
    out, err = docker.logs(chain.proxy)
    assert state["ExitCode"] == 0, f"exit {state['ExitCode']} after {took:.1f} s\n{err}"
    assert took < 10, f"idle, yet stopping took {took:.1f} s\n{err}"  # nothing to drain
    assert not state["OOMKilled"]
    assert len(access_lines(out)) == 3, out  # shutdown wrote nothing to stdout
    assert "Traceback" not in err, err


@pytest.mark.parametrize(
    ("toml", "valid"),
    [
        (None, True),  # the image's own /opt/proxy_config: empty, defaults apply
        ("[timeouts]\nclient_header_s = 5.0\n", True),
        ("[timeouts]\nbogus = 1\n", False),
    ],
    ids=["empty", "valid", "unknown-key"],
)
@pytest.mark.parametrize("bare_env", [False, True], ids=["image-env", "bare-env"])
def test_validate_sh(
    docker: Docker, image: str, tmp_path: Path, toml: str | None, valid: bool, bare_env: bool
) -> None:
    """The contract: exit 0 and no output when valid; non-zero and the reason on stderr if not.
    Run as the platform runs it: no network, the config mounted read-only; also with an empty
    environment (no PATH from the image), in case the hook does not apply the image's ENV."""
    mount: list[str] = []
    if toml is not None:
        config = tmp_path / "proxy_config"
        config.mkdir()
        config.chmod(0o755)  # readable by the image's non-root user, whatever the umask
        (config / "trioproxy.toml").write_text(toml)
        (config / "trioproxy.toml").chmod(0o644)
        mount = ["--volume", f"{config}:/opt/proxy_config:ro"]
    command = ["/usr/bin/env", "-i", "/opt/section/validate.sh"] if bare_env else []
    entrypoint = command[0] if command else "/opt/section/validate.sh"
    proc = docker.run_once(*mount, "--entrypoint", entrypoint, image, *command[1:])
    if valid:
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    else:
        assert proc.returncode != 0
        assert proc.stdout == ""
        assert "bogus" in proc.stderr


def test_only_runtime_packages_are_installed(docker: Docker, image: str) -> None:
    listing = (
        "import importlib.metadata as m, json; "
        "print(json.dumps([d.metadata['Name'] for d in m.distributions()]))"
    )
    proc = docker.run_once("--entrypoint", "/opt/trioproxy/bin/python", image, "-c", listing)
    installed = {re.sub(r"[-_.]+", "-", name).lower() for name in json.loads(proc.stdout)}
    assert {"trioproxy", "trio", "h11", "prometheus-client"} <= installed
    test_only = {"hypercorn", "h2", "wsproto", "pytest", "pytest-trio", "trio-websocket", "pip"}
    assert not installed & test_only, installed


def _context(tmp_path: Path, *, wheelhouse: bool) -> Path:
    """A build context as a clean clone has it (with the wheelhouse built here, if asked)."""
    context = tmp_path / "context"
    context.mkdir()
    for name in ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, context / name)
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "trioproxy", context / "trioproxy", ignore=ignore)
    (context / "scripts").mkdir()
    for name in ("tree-hash", "validate"):
        shutil.copy(REPO / "scripts" / name, context / "scripts" / name)
    if wheelhouse:
        shutil.copytree(REPO / "build" / "wheelhouse", context / "build" / "wheelhouse")
    return context


def _offline_build_fails_saying(docker: Docker, context: Path, tag: str, hint: str) -> None:
    """A build of ``context`` with no network fails, and its output says ``hint``."""
    proc = docker(
        "build", "--network", "none", "--force-rm", "--tag", tag, str(context),
        timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert hint in proc.stdout + proc.stderr


def test_a_wheelhouse_built_from_other_sources_fails_the_build_with_a_hint(
    docker: Docker, image: str, tmp_path: Path
) -> None:
    context = _context(tmp_path, wheelhouse=True)  # the `image` fixture built the wheelhouse
    with (context / "trioproxy" / "_version.py").open("a") as edited:
        edited.write("# edited after scripts/build-wheels\n")
    _offline_build_fails_saying(
        docker,
        context,
        "trioproxy:stale-test",
        "build/wheelhouse was built from other sources than these: run scripts/build-wheels",
    )


def test_a_clean_clone_without_network_fails_with_a_hint(
    docker: Docker, image: str, tmp_path: Path
) -> None:
    """A clean clone takes the index path (no wheelhouse to COPY is no error); with no network
    to reach the index, the build says what to do instead."""
    context = _context(tmp_path, wheelhouse=False)
    _offline_build_fails_saying(
        docker,
        context,
        "trioproxy:no-network-test",
        "no build/wheelhouse, and installing from the package index failed",
    )


def test_a_clean_clone_builds_from_the_index(docker: Docker, tmp_path: Path) -> None:
    """Collected only with TRIOPROXY_IMAGE_INDEX_BUILD=1, where builds reach the package
    index (conftest)."""
    context = _context(tmp_path, wheelhouse=False)
    tag = "trioproxy:index-test"
    docker("build", "--force-rm", "--tag", tag, str(context), timeout=900)
    proc = docker.run_once("--entrypoint", "/opt/trioproxy/bin/trioproxy", tag, "--version")
    assert proc.stdout.startswith("trioproxy ")
