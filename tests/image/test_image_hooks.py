"""Python hooks in the container, as the platform runs it: the configuration directory mounted
read-only with a hook file in it, the image's own entrypoint (workers: auto), and validate.sh
checking hook files offline (lint, a bounded import in a child process, the file's examples).

Same rules as test_image.py: root and a Docker engine; every container removed at the end.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .support import Chain, Docker, open_chain, wait_for
from .test_image import NEXT_HOP_SCRIPT, access_lines, get

pytestmark = [pytest.mark.image, pytest.mark.timeout(900)]

TOML = """
[[rules]]
match.path_prefix = "/hooked/"
hook = { file = "hooks/stamp.py", name = "Stamp", timeout_s = 0.5, on_error = 503 }
"""

# A class with two hook points: an answer for one path, and a response header and an access
# field for the others; with an example validate.sh runs through the real engine.
HOOK = """
from trioproxy.hooks import Example


class Stamp:
    async def request(self, exchange):
        if exchange.request.path == "/hooked/teapot":
            exchange.respond(418, body=b"short and stout\\n")
        exchange.log("stamped", "yes")

    async def response(self, exchange, response):
        exchange.set_response_header("X-Stamped", "by a hook")


EXAMPLES = [Example("GET /hooked/teapot", expect_status=418)]
"""

BLOCKING_HOOK = """
import time


async def check(exchange):
    time.sleep(1)
"""


def _config_dir(tmp_path: Path, toml: str, hooks: dict[str, str]) -> Path:
    config = tmp_path / "proxy_config"
    (config / "hooks").mkdir(parents=True)
    (config / "trioproxy.toml").write_text(toml)
    for name, text in hooks.items():
        (config / "hooks" / name).write_text(text)
    for path in (config, config / "hooks"):  # readable by the image's non-root user
        path.chmod(0o755)
    for path in config.rglob("*.*"):
        path.chmod(0o644)
    return config


@pytest.fixture
def hooked_chain(docker: Docker, image: str, tmp_path: Path) -> Iterator[Chain]:
    config = _config_dir(tmp_path, TOML, {"stamp.py": HOOK})
    mount = ("--volume", f"{config}:/opt/proxy_config:ro")
    with open_chain(docker, image, NEXT_HOP_SCRIPT, *mount) as opened:
        yield opened


def test_a_hook_file_in_the_mounted_configuration_answers_and_edits(hooked_chain: Chain) -> None:
    chain = hooked_chain
    teapot, passed, plain = get(
        chain, chain.proxy_pid, "www.example.test", "/hooked/teapot", "/hooked/x", "/plain"
    )
    assert (teapot["status"], teapot["body"]) == (418, "short and stout\n")
    assert passed["status"] == 200 and json.loads(passed["body"])["path"] == "/hooked/x"
    assert plain["status"] == 200

    def three_lines() -> list[dict[str, Any]] | None:
        # The loop writes access lines in batches, up to 20 ms late, each worker its own.
        lines = access_lines(chain.docker.logs(chain.proxy)[0])
        return lines if len(lines) >= 3 else None

    lines = wait_for(three_lines, timeout=15, what="3 access-log lines on stdout")
    stamped = {line["request"].split()[1]: line.get("stamped") for line in lines}
    assert stamped == {"/hooked/teapot": "yes", "/hooked/x": "yes", "/plain": None}, lines
    assert "Traceback" not in chain.docker.logs(chain.proxy)[1]


def test_validate_sh_checks_hook_files_offline(docker: Docker, image: str, tmp_path: Path) -> None:
    good = _config_dir(tmp_path / "good", TOML, {"stamp.py": HOOK})
    proc = docker.run_once(
        "--volume", f"{good}:/opt/proxy_config:ro", "--entrypoint", "/opt/section/validate.sh",
        image,
    )  # fmt: skip
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")

    toml = '[[rules]]\nhook = { file = "hooks/slow.py", name = "check" }\n'
    bad = _config_dir(tmp_path / "bad", toml, {"slow.py": BLOCKING_HOOK})
    proc = docker.run_once(
        "--volume", f"{bad}:/opt/proxy_config:ro", "--entrypoint", "/opt/section/validate.sh",
        image,
    )  # fmt: skip
    assert proc.returncode != 0 and proc.stdout == ""
    assert "hooks/slow.py:6:" in proc.stderr and "time.sleep" in proc.stderr, proc.stderr
