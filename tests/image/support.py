"""What the image tests share: commands with deadlines, the docker CLI, polling.

The fixtures that choose the Docker engine and build the image are in ``conftest.py``.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn, TypeVar

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("TRIOPROXY_SHARED_DIR", REPO.parent / "shared"))
DOCKERD_DIR = Path(os.environ.get("DOCKERD_DIR", "/tmp/private-dockerd"))  # start-dockerd.sh's

IMAGE = "trioproxy:image-test"
BASE_IMAGE = "python:3.11-slim-bookworm"  # the Dockerfile's FROM, also the next-hop's image
NEXT_HOP_ADDR = "10.253.0.1"
PROXY_ADDR = "10.253.0.2"
PREFIX_LEN = 30  # a point-to-point link: the two addresses above and nothing else
POLL_S = 0.1
T = TypeVar("T")

HOW_TO_RUN = (
    "run scripts/image-test as root with a Docker engine answering (DOCKER_HOST or the default "
    "socket; any engine will do): see docs/image.md"
)


def run(
    args: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    stdin: str = "",
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion within ``timeout`` seconds; fail the test with its output."""
    command = shlex.join(args)
    try:
        proc = subprocess.run(
            list(args),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=None if env is None else dict(env),
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{command}: still running after {timeout} s", pytrace=False)
    if check and proc.returncode != 0:
        pytest.fail(
            f"{command}: exit {proc.returncode}\n"
            f"--- stdout (tail)\n{proc.stdout[-3000:]}\n--- stderr (tail)\n{proc.stderr[-3000:]}",
            pytrace=False,
        )
    return proc


def wait_for(probe: Callable[[], T | None], *, timeout: float, what: str) -> T:
    """Poll ``probe`` until it returns something other than None, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while (result := probe()) is None:
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout} s", pytrace=False)
        time.sleep(POLL_S)
    return result


def skip_or_fail(reason: str) -> NoReturn:
    if os.environ.get("TRIOPROXY_IMAGE_TEST_REQUIRED") == "1":
        pytest.fail(f"{reason} (and TRIOPROXY_IMAGE_TEST_REQUIRED=1)", pytrace=False)
    pytest.skip(reason)


@dataclass(frozen=True)
class Docker:
    """The docker CLI, talking to the private dockerd."""

    env: Mapping[str, str] = field(repr=False)  # the whole environment: kept out of reports

    def __call__(
        self, *args: str, timeout: float, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return run(["docker", *args], timeout=timeout, env=self.env, check=check)

    def pid(self, container: str) -> int:
        return int(self("inspect", "-f", "{{.State.Pid}}", container, timeout=15).stdout)

    def running(self, container: str) -> bool:
        state = self("inspect", "-f", "{{.State.Running}}", container, timeout=15)
        return state.stdout.strip() == "true"

    def logs(self, container: str) -> tuple[str, str]:
        """The container's stdout and stderr, each as its own stream."""
        proc = self("logs", container, timeout=15)
        return proc.stdout, proc.stderr

    def wait_for_log(self, container: str, text: str, *, stream: str, timeout: float) -> str:
        """Poll ``docker logs`` until ``text`` shows on ``stream``; fail early if it exits."""

        def probe() -> str | None:
            out, err = self.logs(container)
            seen = out if stream == "stdout" else err
            if text in seen:
                return seen
            if not self.running(container):
                pytest.fail(
                    f"{container} exited before {text!r}\n--- stdout\n{out}\n--- stderr\n{err}",
                    pytrace=False,
                )
            return None

        return wait_for(probe, timeout=timeout, what=f"{text!r} on {container}'s {stream}")

    def run_once(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``docker run --rm --network none ARGS`` with the container's own exit code and
        streams (create + start --attach: nothing the docker CLI says about the run mixes in)."""
        container = self("create", "--network", "none", *args, timeout=timeout).stdout.strip()
        try:
            return self("start", "--attach", container, timeout=timeout, check=False)
        finally:
            self("rm", "--force", container, timeout=30, check=False)


def in_netns(pid: int, *args: str) -> None:
    run(["nsenter", "-t", str(pid), "-n", *args], timeout=15)


def engine_answers(env: Mapping[str, str]) -> bool:
    """Whether ``docker info`` gets an answer from the engine ``env`` names (DOCKER_HOST, or
    the default socket without it)."""
    try:
        proc = subprocess.run(
            ["docker", "info"], capture_output=True, timeout=30, env=dict(env), check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def private_dockerd_env() -> dict[str, str] | None:
    """The environment naming start-dockerd.sh's engine, if it runs and answers."""
    try:
        os.kill(int((DOCKERD_DIR / "launch.pid").read_text()), 0)
    except (OSError, ValueError):
        return None
    env = {**os.environ, "DOCKER_HOST": f"unix://{DOCKERD_DIR}/docker.sock"}
    return env if engine_answers(env) else None


@dataclass(frozen=True)
class Chain:
    """next-hop and the proxy, each in its own network namespace, joined by one veth pair."""

    docker: Docker
    proxy: str
    proxy_pid: int
    next_hop: str
    next_hop_pid: int
    ready_stderr: str


@contextlib.contextmanager
def open_chain(
    docker: Docker, image: str, next_hop_script: str, *proxy_options: str
) -> Iterator[Chain]:
    """A next-hop container running ``next_hop_script`` (it prints "next-hop: ready" once it
    listens on port 80) and the proxy (``docker run`` with ``proxy_options``), both with
    ``--network none``, joined by a veth pair; both removed on exit."""
    name = f"tpx-{os.getpid()}"  # veth names below stay within IFNAMSIZ (15)
    next_hop, proxy = f"{name}-next-hop", f"{name}-proxy"
    veth_next_hop, veth_proxy = f"{name}n", f"{name}p"
    try:
        detached = ("run", "--detach", "--network", "none")
        docker(
            *detached, "--name", next_hop, BASE_IMAGE, "python3", "-c", next_hop_script, timeout=60
        )
        docker.wait_for_log(next_hop, "next-hop: ready", stream="stdout", timeout=30)
        hosts = ("--add-host", f"next-hop:{NEXT_HOP_ADDR}")
        docker(*detached, "--name", proxy, *hosts, *proxy_options, image, timeout=60)
        ready = docker.wait_for_log(proxy, "trioproxy: listening on", stream="stderr", timeout=30)
        next_hop_pid, proxy_pid = docker.pid(next_hop), docker.pid(proxy)
        run(
            ["ip", "link", "add", veth_next_hop, "type", "veth", "peer", "name", veth_proxy],
            timeout=15,
        )
        run(["ip", "link", "set", veth_next_hop, "netns", str(next_hop_pid)], timeout=15)
        run(["ip", "link", "set", veth_proxy, "netns", str(proxy_pid)], timeout=15)
        for pid, veth, address in (
            (next_hop_pid, veth_next_hop, NEXT_HOP_ADDR),
            (proxy_pid, veth_proxy, PROXY_ADDR),
        ):
            in_netns(pid, "ip", "address", "add", f"{address}/{PREFIX_LEN}", "dev", veth)
            in_netns(pid, "ip", "link", "set", veth, "up")
        yield Chain(docker, proxy, proxy_pid, next_hop, next_hop_pid, ready)
    finally:
        # Ends moved into a container go away with its namespace; one left here is deleted
        # (with its peer). Errors are expected when there is nothing left to remove.
        for veth in (veth_next_hop, veth_proxy):
            run(["ip", "link", "delete", veth], timeout=15, check=False)
        docker("rm", "--force", proxy, next_hop, timeout=60, check=False)
