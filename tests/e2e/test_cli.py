"""The real command in a subprocess: readiness, logs on the right streams, failures.
(SIGTERM's drain: test_drain.py.)"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import trio

from trioproxy import __version__
from trioproxy.config._config import load_settings, settings_from_bytes
from trioproxy.config._settings import Settings

from ..cli_support import cli_proxy, run_cli, wait_for_exit
from ..support import Client


async def test_serves_and_logs_one_json_line_per_request(origin: tuple[str, int]) -> None:
    async with cli_proxy(origin) as proxy:
        async with Client.connect(proxy.address) as client:
            for i in range(3):
                reply = await client.request(b"GET", b"/r%d" % i, [(b"Host", b"site.example")])
                assert reply.status == 200
        proxy.process.send_signal(signal.SIGTERM)
        assert await wait_for_exit(proxy.process) == 0
    lines = proxy.stdout.decode().splitlines()
    assert len(lines) == 3  # stdout carries access lines and nothing else
    records = [json.loads(line) for line in lines]
    assert [r["path"] for r in records] == ["/r0", "/r1", "/r2"]
    assert {r["status"] for r in records} == {"200"}
    assert {r["hostname"] for r in records} == {"site.example"}
    assert b"Traceback" not in proxy.stderr


async def test_unbindable_address_is_one_clear_line_and_exit_1() -> None:
    with trio.socket.socket() as taken:
        await taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = await run_cli(["--listen", f"127.0.0.1:{port}"])
    assert result.returncode == 1
    assert result.stdout == b""
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in lines[0]
    assert "Address already in use" in lines[0]
    assert "--listen" in lines[0]


async def test_bad_option_values_are_reported_without_traceback() -> None:
    result = await run_cli(["--listen", "nonsense"])
    assert result.returncode == 2
    assert b"--listen" in result.stderr
    assert b"Traceback" not in result.stderr


async def test_unresolvable_upstream_warns_then_answers_502() -> None:
    async with cli_proxy(("no-such-host.invalid", 80)) as proxy:
        async with Client.connect(proxy.address) as client:
            assert (await client.request(b"GET", b"/")).status == 502
        proxy.process.send_signal(signal.SIGTERM)
        assert await wait_for_exit(proxy.process) == 0
    assert b"WARNING" in proxy.stderr and b"does not resolve" in proxy.stderr
    assert json.loads(proxy.stdout.decode().splitlines()[0])["status"] == "502"


async def test_environment_variables_configure_the_proxy(origin: tuple[str, int]) -> None:
    result = await run_cli(["--help"])
    assert b"TRIOPROXY_<NAME>" in result.stdout
    assert result.returncode == 0


async def test_admin_listener_from_the_configuration(
    origin: tuple[str, int], tmp_path: Path
) -> None:
    with trio.socket.socket() as probe:  # a free loopback port for the admin listener
        await probe.bind(("127.0.0.1", 0))
        admin_port = probe.getsockname()[1]
    (tmp_path / "trioproxy.toml").write_text(f'[admin]\nlisten = "127.0.0.1:{admin_port}"\n')
    async with cli_proxy(origin, config_dir=str(tmp_path)) as proxy:
        assert f"admin listener on 127.0.0.1:{admin_port}".encode() in proxy.stderr
        async with Client.connect(proxy.address) as client:
            assert (await client.request(b"GET", b"/")).status == 200
        async with Client.connect(("127.0.0.1", admin_port)) as admin:
            assert (await admin.request(b"GET", b"/healthz")).status == 200
        async with Client.connect(("127.0.0.1", admin_port)) as admin:
            metrics = (await admin.request(b"GET", b"/metrics")).body.decode()
        proxy.process.send_signal(signal.SIGTERM)
        assert await wait_for_exit(proxy.process) == 0
    assert 'section_http_request_count_total{hostname="test.example",status="200"} 1.0' in metrics


async def test_version() -> None:
    for flag in ("--version", "-V"):
        result = await run_cli([flag])
        assert (result.returncode, result.stdout) == (0, f"trioproxy {__version__}\n".encode())


@pytest.mark.parametrize(
    ("env", "args", "says"),
    [
        ({"TRIOPROXY_WORKERS": "abc"}, [], "trioproxy: TRIOPROXY_WORKERS: expected a whole number"),
        ({"TRIOPROXY_LOG_LEVEL": "loud"}, [], "trioproxy: TRIOPROXY_LOG_LEVEL: expected one of"),
        ({"TRIOPROXY_LISTEN": "bogus"}, [], "trioproxy: TRIOPROXY_LISTEN: expected HOST:PORT"),
        (
            {},
            ["--upstream", "http://foo:80"],
            "trioproxy: --upstream: expected HOST:PORT, not a URL",
        ),
        ({}, ["--upstream", "foo:0"], "trioproxy: --upstream: port must be a number from 1"),
        ({}, ["--workers", "0"], "trioproxy: --workers: expected a whole number of at least 1"),
        ({}, ["--workers", "-3"], "trioproxy: --workers: expected a whole number of at least 1"),
        ({}, ["--bogus"], "trioproxy: unrecognized arguments: --bogus (see trioproxy --help)"),
        ({"TRIOPROXY_PARSER": "fast"}, [], "trioproxy: TRIOPROXY_PARSER: expected auto, h11 or"),
        ({}, ["demo", "--workers", "2"], "trioproxy demo: unrecognized arguments: --workers 2"),
        ({}, ["demo", "--upstream", "a:1"], "trioproxy demo: unrecognized arguments: --upstream"),
    ],
)
async def test_bad_options_and_variables_are_one_line_naming_them(
    env: dict[str, str], args: list[str], says: str
) -> None:
    result = await run_cli(args, env=env)
    assert result.returncode == 2
    assert result.stdout == b""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(says)


@pytest.mark.parametrize("workers", ["1", "2"])  # 2: the supervisor checks it
async def test_a_named_config_dir_that_is_missing_is_an_error(tmp_path: Path, workers: str) -> None:
    missing = tmp_path / "absent"
    for how in (["--config-dir", str(missing)], []):
        env = {} if how else {"TRIOPROXY_CONFIG_DIR": str(missing)}
        result = await run_cli(["--listen", "127.0.0.1:0", "--workers", workers, *how], env=env)
        assert result.returncode == 2
        assert result.stderr.decode().strip().endswith(f"config: {missing}: no such directory")


async def test_config_prints_the_effective_configuration_as_toml(tmp_path: Path) -> None:
    (tmp_path / "trioproxy.toml").write_text(
        '[timeouts]\nclient_idle_s = 5\n\n[[rules]]\nmatch.path_prefix = "/old/"\n'
        'redirect = { to = "/new/", status = 301 }\n\n'
        '[[rules]]\nmatch.path = "/q"\nrespond = { status = 200, body = "a\\"\\n\\u007f" }\n'
    )
    result = await run_cli(["config", str(tmp_path)])
    assert (result.returncode, result.stderr) == (0, b"")
    text = result.stdout.decode()
    assert "client_idle_s = 5.0\n" in text
    assert "client_header_s = 10.0\n" in text  # a default, shown
    assert settings_from_bytes(result.stdout, file="-") == load_settings(tmp_path)


async def test_config_of_defaults_and_of_an_invalid_file(tmp_path: Path) -> None:
    result = await run_cli(["config", str(tmp_path)])
    assert result.returncode == 0
    assert settings_from_bytes(result.stdout, file="-") == Settings()
    (tmp_path / "trioproxy.toml").write_text("[timeouts]\nconect_s = 5\n")
    result = await run_cli(["config", str(tmp_path)])
    assert (result.returncode, result.stdout) == (1, b"")
    assert b"timeouts.conect_s: unknown key" in result.stderr
