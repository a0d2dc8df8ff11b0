"""The image tests' Docker engine and image, shared by every module here (one build a session).

The engine: the one that answers on ``DOCKER_HOST`` (or the default socket) whenever one
does; else the private dockerd of the workspace's ``shared/docker/start-dockerd.sh``, running
already or started here. Skipped, with the reason and how to run them, only where none of
these can be had (not root, none answering and none to start). ``TRIOPROXY_IMAGE_TEST_REQUIRED=1``
(.ci/run sets it) turns any skip of a test here into a failure: CI never passes an image test
by skipping it. The build from the package index needs network inside builds, which CI here
lacks: it is collected only with ``TRIOPROXY_IMAGE_INDEX_BUILD=1``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from .support import (
    BASE_IMAGE,
    DOCKERD_DIR,
    HOW_TO_RUN,
    IMAGE,
    REPO,
    SHARED,
    Docker,
    engine_answers,
    private_dockerd_env,
    run,
    skip_or_fail,
)

REQUIRED = os.environ.get("TRIOPROXY_IMAGE_TEST_REQUIRED") == "1"
INDEX_BUILD_TESTS = {"test_a_clean_clone_builds_from_the_index"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("TRIOPROXY_IMAGE_INDEX_BUILD") == "1":
        return
    here = Path(__file__).parent
    dropped = [i for i in items if i.name in INDEX_BUILD_TESTS and i.path.parent == here]
    if dropped:
        items[:] = [item for item in items if item not in dropped]
        config.hook.pytest_deselected(items=dropped)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    """Where the image test is required, a skip of one of its tests is a failure."""
    outcome = yield
    report = outcome.get_result()
    if REQUIRED and report.skipped and item.get_closest_marker("image") is not None:
        report.outcome = "failed"
        report.longrepr = f"skipped, but TRIOPROXY_IMAGE_TEST_REQUIRED=1: {report.longrepr}"


@pytest.fixture(scope="session")
def docker() -> Iterator[Docker]:
    if os.geteuid() != 0:
        skip_or_fail(f"the image test needs root (veth pairs, nsenter): {HOW_TO_RUN}")
    # An engine that answers is used as it is: whether some other dockerd (the private one
    # included) also runs says nothing about this one.
    if engine_answers(os.environ):
        yield Docker({**os.environ, "DOCKER_BUILDKIT": "0"})
        return
    private = private_dockerd_env()
    if private is not None:
        yield Docker({**private, "DOCKER_BUILDKIT": "0"})
        return
    asked = os.environ.get("DOCKER_HOST") or "the default socket"
    script = SHARED / "docker" / "start-dockerd.sh"
    if not script.is_file():
        skip_or_fail(
            f"no Docker engine answers on {asked} and there is no {script} to start one "
            f"(TRIOPROXY_SHARED_DIR): {HOW_TO_RUN}"
        )
    try:
        proc = subprocess.run(
            ["bash", str(script)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,  # installs docker.io on a fresh machine
            check=False,
            env={**os.environ, "DOCKERD_DIR": str(DOCKERD_DIR)},
        )
    except subprocess.TimeoutExpired:
        skip_or_fail("start-dockerd.sh did not finish within 300 s")
    found = re.search(r"^export DOCKER_HOST=(\S+)$", proc.stdout, re.MULTILINE)
    if proc.returncode != 0 or found is None:
        skip_or_fail(
            f"no Docker engine answers on {asked}, and start-dockerd.sh exited "
            f"{proc.returncode}: {proc.stderr.strip()[-500:]}; {HOW_TO_RUN}"
        )
    yield Docker({**os.environ, "DOCKER_HOST": found.group(1), "DOCKER_BUILDKIT": "0"})
    if os.environ.get("TRIOPROXY_KEEP_DOCKERD") != "1":
        run(["bash", str(SHARED / "docker" / "stop-dockerd.sh")], timeout=60, check=False)


@pytest.fixture(scope="session")
def image(docker: Docker) -> str:
    """The image, built from the repo's Dockerfile the way CI builds it (no network)."""
    make_base = SHARED / "docker" / "make-base-image.sh"  # else the engine pulls it
    missing = docker("image", "inspect", BASE_IMAGE, timeout=15, check=False).returncode != 0
    if missing and make_base.is_file():
        run(["bash", str(make_base)], timeout=600, env=docker.env)
    run(
        [str(REPO / "scripts" / "build-wheels")],
        timeout=300,
        env={**os.environ, "PYTHON": sys.executable},
    )
    docker("build", "--network", "none", "--force-rm", "--tag", IMAGE, str(REPO), timeout=600)
    return IMAGE
