"""The command's messages to an operator, from a subprocess: usage errors, directories, JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..cli_support import run_cli

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "validate"


def test_validate_sh_refuses_extra_arguments_as_trioproxy_validate_does(tmp_path: Path) -> None:
    python_dir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIOPROXY_")}
    env["PATH"] = f"{python_dir}:{env.get('PATH', '')}"
    results = [
        subprocess.run(
            [*command, str(tmp_path), str(tmp_path)],
            capture_output=True,
            env=env,
            timeout=30,
            check=False,
        )
        for command in ([str(SCRIPT)], [sys.executable, "-m", "trioproxy", "validate"])
    ]
    script, command = ((r.returncode, r.stdout, r.stderr) for r in results)
    assert script == command
    assert script[0] == 2
    assert b"expected at most one directory, got 2" in script[2]


@pytest.mark.parametrize("workers", ["1", "2"])  # 2: the supervisor checks it
async def test_a_file_named_as_config_dir_is_not_a_directory(tmp_path: Path, workers: str) -> None:
    file = tmp_path / "trioproxy.toml"
    file.write_text("")
    args = ["--listen", "127.0.0.1:0", "--workers", workers, "--config-dir", str(file)]
    result = await run_cli(args)
    assert result.returncode == 2
    assert result.stderr.decode().strip().endswith(f"config: {file}: is not a directory")


@pytest.mark.parametrize(
    ("env", "args", "says"),
    [
        ({}, ["--log-format", "json", "--workers", "0"], "trioproxy: --workers: expected"),
        ({}, ["--log-format=json", "--bogus"], "trioproxy: unrecognized arguments: --bogus"),
        ({"TRIOPROXY_LOG_FORMAT": "json"}, ["--workers", "x"], "trioproxy: --workers: expected"),
        ({"TRIOPROXY_LOG_FORMAT": "json", "TRIOPROXY_PARSER": "x"}, [], "trioproxy: TRIOPROXY_"),
        ({}, ["--config-dir", "{json}", "--upstream", "h:0"], "trioproxy: --upstream: port"),
        ({"TRIOPROXY_CONFIG_DIR": "{json}"}, ["--bogus"], "trioproxy: unrecognized arguments"),
        ({}, ["demo", "--log-format", "json", "--upstream", "h:1"], "trioproxy demo: unrecog"),
    ],
)
async def test_argument_errors_are_json_lines_under_json_diagnostics(
    tmp_path: Path, env: dict[str, str], args: list[str], says: str
) -> None:
    (tmp_path / "trioproxy.toml").write_text('[diagnostics]\nformat = "json"\n')
    env = {k: v.format(json=tmp_path) for k, v in env.items()}
    result = await run_cli([a.format(json=tmp_path) for a in args], env=env)
    assert (result.returncode, result.stdout) == (2, b"")
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    line = json.loads(lines[0])
    assert line["level"] == "ERROR"
    assert line["message"].startswith(says)


async def test_argument_errors_stay_plain_text_under_text_diagnostics(tmp_path: Path) -> None:
    (tmp_path / "trioproxy.toml").write_text('[diagnostics]\nformat = "json"\n')
    args = ["--config-dir", str(tmp_path), "--log-format", "text", "--workers", "0"]
    result = await run_cli(args)
    assert result.returncode == 2
    assert result.stderr.decode().startswith("trioproxy: --workers: expected")


async def test_finding_the_format_never_waits_on_a_fifo_named_as_the_file(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "trioproxy.toml")  # nobody writes it: a plain open() would wait
    result = await run_cli(["--config-dir", str(tmp_path), "--workers", "0"], timeout_s=10)
    assert result.returncode == 2
    assert result.stderr.decode().startswith("trioproxy: --workers: expected")
