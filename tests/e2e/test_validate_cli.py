"""``trioproxy validate`` as the platform runs it: a subprocess, judged by exit code and output.

The contract: a valid configuration exits 0 and prints nothing at all; an invalid one exits
non-zero and explains on stderr (here: one line per problem, exit 1); nothing ever prints a
traceback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from trioproxy.config import _validate
from trioproxy.config._config import CONFIG_FILENAME

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "validate"
TIMEOUT_S = 30  # a cap on every subprocess, far above the ~0.1 s each takes


def run_module(*args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "trioproxy.config._validate", *args],
        capture_output=True,
        cwd=cwd,
        timeout=TIMEOUT_S,
        check=False,
    )


def config_dir(tmp_path: Path, text: str | bytes | None) -> Path:
    directory = tmp_path / "proxy_config"
    directory.mkdir()
    if text is not None:
        (directory / CONFIG_FILENAME).write_bytes(text.encode() if isinstance(text, str) else text)
    return directory


VALID = """\
[timeouts]
upstream_connect_s = 5
drain_s = 10.5

[upstream]
pool_size = 64

[access_log]
format = "ltsv"
fields = ["time", "status", "request"]

[admin]
listen = "127.0.0.1:9901"
"""


@pytest.mark.parametrize(
    "text", [VALID, "", "# nothing\n", None], ids=["valid", "empty-file", "comment", "no-file"]
)
def test_valid_is_silent(tmp_path: Path, text: str | None) -> None:
    result = run_module(str(config_dir(tmp_path, text)), cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


def test_a_named_directory_that_is_missing_is_an_error(tmp_path: Path) -> None:
    result = run_module(str(tmp_path / "absent"), cwd=tmp_path)
    assert (result.returncode, result.stdout) == (2, b"")
    first = result.stderr.decode().splitlines()[0]
    assert first == f"trioproxy validate: {tmp_path / 'absent'}: no such directory"


def test_the_default_directory_missing_is_silent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(_validate, "DEFAULT_CONFIG_DIR", str(tmp_path / "absent"))
    assert _validate.main([]) == 0
    assert capsys.readouterr() == ("", "")


def test_other_files_are_ignored(tmp_path: Path) -> None:
    directory = config_dir(tmp_path, None)
    (directory / "README.md").write_text("notes\n")
    result = run_module(str(directory), cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


INVALID = [
    # (file content, the one line expected on stderr after "<file>")
    ("[timeouts]\nconect_s = 5\n", ":2: timeouts.conect_s: unknown key; did you mean "),
    ('[upstream]\npool_size = "64"\n', ":2: upstream.pool_size: expected an integer from 1 to"),
    ("[timeouts]\ndrain_s = = 5\n", ":2: invalid TOML: Invalid value (column 11)"),
    (b"\x00\x01\x02\xff\xfe garbage", ":1: is a binary file (contains NUL bytes)"),
    (b'via_name = "\xff"\n', ":1: is not UTF-8 text (byte 0xff at column 13)"),
    ('[admin]\nlisten = "0.0.0.0:9901"\n', ":2: admin.listen: only a loopback address"),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    INVALID,
    ids=["typo", "wrong-type", "syntax", "binary", "not-utf8", "public-admin"],
)
def test_invalid_prints_one_line_on_stderr(
    tmp_path: Path, text: str | bytes, expected: str
) -> None:
    directory = config_dir(tmp_path, text)
    result = run_module(str(directory), cwd=tmp_path)
    assert (result.returncode, result.stdout) == (1, b"")
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{directory / CONFIG_FILENAME}{expected}")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    directory = config_dir(tmp_path, None)
    (directory / CONFIG_FILENAME).mkdir()
    result = run_module(str(directory), cwd=tmp_path)
    assert (result.returncode, result.stdout) == (1, b"")
    expected = f"{directory / CONFIG_FILENAME}: is a directory, expected a TOML file\n"
    assert result.stderr.decode() == expected


def test_several_problems_several_lines(tmp_path: Path) -> None:
    text = (
        "[timeouts]\nconect_s = 5\ndrain_s = -1\n"
        "[upstream]\npool_size = true\n"
        '[access_log]\nformat = "xml"\nfields = ["time", "time"]\n'
        "[nope]\n"
    )
    directory = config_dir(tmp_path, text)
    result = run_module(str(directory), cwd=tmp_path)
    assert (result.returncode, result.stdout) == (1, b"")
    lines = result.stderr.decode().splitlines()
    file = directory / CONFIG_FILENAME
    assert [line.split(": ")[:2] for line in lines] == [
        [f"{file}:2", "timeouts.conect_s"],
        [f"{file}:3", "timeouts.drain_s"],
        [f"{file}:5", "upstream.pool_size"],
        [f"{file}:7", "access_log.format"],
        [f"{file}:8", "access_log.fields"],
        [f"{file}:9", "nope"],
    ]


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    # pytest's tmp_path lives under a 0700 directory that an unprivileged user cannot enter.
    directory = Path(tempfile.mkdtemp(prefix="trioproxy-validate-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory)


def test_unreadable_file(world_readable_dir: Path) -> None:
    file = world_readable_dir / CONFIG_FILENAME
    file.write_text(VALID)
    file.chmod(0)
    if os.geteuid() == 0:
        # Root reads chmod 000 files. Drop to nobody, after the imports: the interpreter may
        # live somewhere nobody cannot read (here: under /root).
        code = (
            "import os, sys\n"
            "from trioproxy.config._validate import main\n"
            "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
            "sys.exit(main(sys.argv[1:]))\n"
        )
        command = [sys.executable, "-c", code, str(world_readable_dir)]
    else:
        command = [sys.executable, "-m", "trioproxy.config._validate", str(world_readable_dir)]
    result = subprocess.run(command, capture_output=True, timeout=TIMEOUT_S, check=False)
    assert (result.returncode, result.stdout) == (1, b"")
    assert result.stderr.decode() == f"{file}: cannot be read: permission denied\n"


def test_does_not_import_the_proxy_engine(tmp_path: Path) -> None:
    # A push waits on the validator: it must not pay for trio's and h11's import time.
    code = (
        "import sys\n"
        "from trioproxy.config._validate import main\n"
        "main(sys.argv[1:])\n"
        "engine = [m for m in sys.modules if m.split('.')[0] in ('trio', 'h11', 'hypercorn')]\n"
        "print(engine)\n"
    )
    directory = config_dir(tmp_path, VALID)
    result = subprocess.run(
        [sys.executable, "-c", code, str(directory)],
        capture_output=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert (result.stdout, result.stderr) == (b"[]\n", b"")


# --- scripts/validate, as /opt/section/validate.sh ----------------------------------------------


def run_script(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, env=env, cwd=cwd, timeout=TIMEOUT_S, check=False
    )


def env_with_path(path: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "PATH": path, **extra}


def test_script_is_executable() -> None:
    assert os.access(SCRIPT, os.X_OK)


def test_script_valid_and_invalid(tmp_path: Path) -> None:
    # python3 on PATH is the (virtualenv's) interpreter running the tests.
    python_dir = Path(sys.executable).parent
    assert (python_dir / "python3").exists()
    env = env_with_path(f"{python_dir}:{os.environ.get('PATH', '')}")
    valid = config_dir(tmp_path, VALID)
    result = run_script(str(valid), env=env, cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")

    (valid / CONFIG_FILENAME).write_text("[timeouts]\nconect_s = 5\n")
    result = run_script(str(valid), env=env, cwd=tmp_path)
    assert (result.returncode, result.stdout) == (1, b"")
    assert result.stderr.decode().startswith(f"{valid / CONFIG_FILENAME}:2: timeouts.conect_s")


def test_script_with_an_explicit_python(tmp_path: Path) -> None:
    empty = tmp_path / "empty-path"
    empty.mkdir()
    env = env_with_path(str(empty), TRIOPROXY_PYTHON=sys.executable)
    result = run_script(str(config_dir(tmp_path, None)), env=env, cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


def test_script_without_trioproxy_fails_loudly(tmp_path: Path) -> None:
    empty = tmp_path / "empty-path"
    empty.mkdir()
    env = {k: v for k, v in env_with_path(str(empty)).items() if k != "TRIOPROXY_PYTHON"}
    result = run_script(str(tmp_path), env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == b""
    assert b"trioproxy is not installed" in result.stderr


# --- main() in-process: the paths a subprocess cannot easily reach ------------------------------


def test_main_default_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(_validate, "DEFAULT_CONFIG_DIR", str(config_dir(tmp_path, "x = 1\n")))
    assert _validate.main([]) == 1
    assert "x: unknown key" in capsys.readouterr().err


def test_main_internal_error_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(config_dir: str) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(_validate, "load_settings", broken)
    assert _validate.main([str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", "trioproxy validate: internal error: RuntimeError: boom\n")


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["a", "b"], "expected at most one directory, got 2: 'a' 'b'"),
        (["--strict"], "unknown option '--strict'"),
    ],
)
def test_main_usage_error_says_what_is_wrong(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _validate.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    first, usage = err.splitlines()
    assert first.startswith(f"trioproxy validate: {says}")
    assert usage.startswith("usage: trioproxy validate [DIR]")


def test_main_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert _validate.main(["--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: ")


def test_main_double_dash(tmp_path: Path) -> None:
    (tmp_path / "-dir").mkdir()
    assert _validate.main(["--", str(tmp_path / "-dir")]) == 0
