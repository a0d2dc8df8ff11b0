"""Hooks end to end: embedded in three lines, through the command with one and two workers,
reloaded under load with the hook file changing, and checked by validate.sh."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import trio
import trio.lowlevel

import trioproxy
from trioproxy.hooks import Exchange

from ..cli_support import ReloadLoad, cli_proxy, wait_for_exit
from ..support import Client

VALIDATE = Path(__file__).resolve().parents[2] / "scripts" / "validate"


async def test_an_embedded_proxy_takes_a_hook_object(origin: tuple[str, int]) -> None:
    async def check(exchange: Exchange) -> None:
        if exchange.request.header("authorization") != "Bearer good":
            exchange.respond(401, "no\n")

    async with trioproxy.running(origin, hook=check) as proxy:
        async with Client.connect(proxy.address) as client:
            denied = await client.request(b"GET", b"/")
            allowed = await client.request(b"GET", b"/", [(b"Authorization", b"Bearer good")])
    assert (denied.status, denied.body, allowed.status) == (401, b"no\n", 200)


def _generation_hook(generation: int) -> str:
    return textwrap.dedent(
        f"""
        from trioproxy.hooks import Exchange

        GENERATION = "{generation}"

        class Tag:
            async def request(self, exchange: Exchange) -> None:
                if exchange.request.path == "/secret":
                    exchange.respond(401, "token required\\n")

            async def response(self, exchange: Exchange, response) -> None:
                exchange.set_response_header("X-Generation", GENERATION)

            async def access(self, exchange: Exchange, status: int) -> None:
                exchange.log("hook_generation", GENERATION)
        """
    )


def _write(tmp_path: Path, generation: int) -> None:
    (tmp_path / "hooks").mkdir(exist_ok=True)
    (tmp_path / "hooks" / "tag.py").write_text(_generation_hook(generation))
    (tmp_path / "trioproxy.toml").write_text(
        '[[rules]]\nhook = { file = "hooks/tag.py", name = "Tag", timeout_s = 0.5 }\n'
    )


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_hooks_through_the_command_reloaded_under_load(
    origin: tuple[str, int], tmp_path: Path, workers: str
) -> None:
    _write(tmp_path, 0)
    load = ReloadLoad()
    async with cli_proxy(origin, "--workers", workers, config_dir=str(tmp_path)) as proxy:
        async with Client.connect(proxy.address) as client:
            assert (await client.request(b"GET", b"/secret")).status == 401
        with trio.fail_after(90):
            async with trio.open_nursery() as nursery:
                for _ in range(4):
                    nursery.start_soon(load.client, proxy.address)
                for generation in (1, 2):
                    await trio.sleep(0.3)
                    if generation == 2:  # a hook file that fails to import: rejected
                        broken = "import no_such_module\n" + _generation_hook(9)
                        (tmp_path / "hooks" / "tag.py").write_text(broken)
                        await proxy.reload(b": rejected (", timeout_s=20)
                    _write(tmp_path, generation)
                    await proxy.reload(b": ok, ", timeout_s=20)
                    load.returned = generation
                    async with Client.connect(proxy.address) as fresh:
                        reply = await fresh.request(b"GET", b"/")
                    assert reply.header(b"x-generation") == str(generation).encode()
                await trio.sleep(0.3)
                load.stop.set()
        proxy.process.send_signal(signal.SIGTERM)
        assert await wait_for_exit(proxy.process) == 0, proxy.stderr.decode()
    assert load.failures == []
    assert load.done > 20
    stderr = proxy.stderr.decode()
    assert "hooks/tag.py:1: importing failed: ModuleNotFoundError" in stderr, stderr
    lines = [json.loads(line) for line in proxy.stdout.decode().splitlines()]
    # (Workers write their lines in batches: across processes, stdout is not in request order.)
    (secret,) = [line for line in lines if line["path"] == "/secret"]
    assert secret["status"] == "401" and secret["hook_generation"] == "0"
    assert {line["hook_generation"] for line in lines} == {"0", "1", "2"}


BAD_FILES = {
    "escape": ('{ file = "../outside.py", name = "h" }', None, "must stay inside"),
    "syntax": ('{ file = "hooks/h.py", name = "h" }', "async def h(:\n", "h.py:1: invalid Python"),
    "missing": (
        '{ file = "hooks/h.py", name = "nope" }',
        "async def h(exchange):\n    pass\n",
        "no hook named 'nope' in this file (defined: h)",
    ),
    "sync": (
        '{ file = "hooks/h.py", name = "h" }',
        "def h(exchange):\n    pass\n",
        "h.py:1: h must be 'async def'",
    ),
    "blocking": (
        '{ file = "hooks/h.py", name = "h" }',
        "import time\nasync def h(exchange):\n    time.sleep(1)\n",
        "h.py:3: time.sleep blocks every connection",
    ),
    "example": (
        '{ file = "hooks/h.py", name = "h" }',
        "from trioproxy.hooks import Example\n"
        "async def h(exchange):\n    exchange.respond(401)\n"
        "EXAMPLES = [\n    Example('GET /x', expect_status=200),\n]\n",
        "h.py:5: example 'GET /x': expected status 200, got 401",
    ),
    "import": (
        '{ file = "hooks/h.py", name = "h" }',
        "import no_such_module\nasync def h(exchange):\n    pass\n",
        "h.py:1: importing failed: ModuleNotFoundError",
    ),
}


def _validate(directory: Path) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "TRIOPROXY_PYTHON": sys.executable}
    command = ["sh", str(VALIDATE), str(directory)]
    return subprocess.run(command, capture_output=True, timeout=60, env=env, check=False)


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_validate_gives_one_precise_line_per_bad_hook(tmp_path: Path, case: str) -> None:
    hook, source, expected = BAD_FILES[case]
    (tmp_path / "trioproxy.toml").write_text(f"[[rules]]\nhook = {hook}\n")
    if source is not None:
        (tmp_path / "hooks").mkdir()
        (tmp_path / "hooks" / "h.py").write_text(source)
    done = _validate(tmp_path)
    lines = done.stderr.decode().splitlines()
    assert done.returncode == 1 and done.stdout == b""
    assert len(lines) == 1 and expected in lines[0], lines
    assert lines[0].startswith(str(tmp_path)), lines


def test_validate_is_silent_on_good_hooks_and_runs_their_examples(tmp_path: Path) -> None:
    _write(tmp_path, 0)
    done = _validate(tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    examples = Path(__file__).resolve().parents[2] / "examples" / "hooks"
    done = _validate(examples)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")


def test_a_symlink_out_of_the_directory_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside.py"
    outside.write_text("async def h(exchange):\n    pass\n")
    config = tmp_path / "config"
    (config / "hooks").mkdir(parents=True)
    (config / "hooks" / "h.py").symlink_to(outside)
    (config / "trioproxy.toml").write_text(
        '[[rules]]\nhook = { file = "hooks/h.py", name = "h" }\n'
    )
    done = _validate(config)
    assert done.returncode == 1
    assert b"symbolic link leading out of the configuration directory" in done.stderr


async def test_the_supervisor_sums_the_workers_hook_counters(
    origin: tuple[str, int], tmp_path: Path
) -> None:
    from .test_admin import admin_request, scrape, value
    from .test_workers import _free_port

    admin_port = await _free_port()
    _write(tmp_path, 0)
    toml = tmp_path / "trioproxy.toml"
    toml.write_text(f'[admin]\nlisten = "127.0.0.1:{admin_port}"\n\n' + toml.read_text())
    admin = ("127.0.0.1", admin_port)
    async with cli_proxy(origin, "--workers", "2", config_dir=str(tmp_path)) as proxy:
        assert (await admin_request(admin, b"/healthz")).status == 200
        for _ in range(20):  # a connection each: both workers serve some
            async with Client.connect(proxy.address) as client:
                assert (await client.request(b"GET", b"/")).status == 200
        with trio.fail_after(10):
            await proxy.wait_for_output(lambda: proxy.stdout.count(b"\n") >= 20)
        samples = await scrape(admin)
        proxy.process.send_signal(signal.SIGTERM)
        assert await wait_for_exit(proxy.process) == 0, proxy.stderr.decode()
    # Each request called the request, response and access points: 3 calls each.
    assert value(samples, "trioproxy_hook_calls_total", hook="hooks/tag.py:Tag") == 60
    assert value(samples, "trioproxy_hook_errors_total", hook="hooks/tag.py:Tag") == 0
