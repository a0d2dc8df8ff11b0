"""``trioproxy validate`` / ``config`` choose their directory as the proxy does (in-process)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trioproxy.config import _validate
from trioproxy.config._options import OptionError, directory_problem, resolve


def _invalid_config(tmp_path: Path) -> Path:
    (tmp_path / "trioproxy.toml").write_text("x = 1\n")
    return tmp_path


@pytest.mark.parametrize("main", [_validate.main, _validate.config_main])
def test_the_config_dir_variable_is_checked_as_the_proxy_reads_it(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    main: object,
) -> None:
    monkeypatch.setattr(_validate, "DEFAULT_CONFIG_DIR", str(tmp_path / "absent"))
    monkeypatch.setenv("TRIOPROXY_CONFIG_DIR", str(_invalid_config(tmp_path)))
    assert callable(main)
    assert main([]) == 1
    assert "x: unknown key" in capsys.readouterr().err


def test_an_argument_wins_over_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TRIOPROXY_CONFIG_DIR", str(_invalid_config(tmp_path)))
    valid = tmp_path / "valid"
    valid.mkdir()
    assert _validate.main([str(valid)]) == 0
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("absent", "TRIOPROXY_CONFIG_DIR: {dir}/absent: no such directory"),
        ("file", "TRIOPROXY_CONFIG_DIR: {dir}/file: is not a directory"),
        ("", "TRIOPROXY_CONFIG_DIR: expected a directory, got ''"),
    ],
)
def test_a_variable_naming_no_directory_is_a_usage_error(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    value: str,
    says: str,
) -> None:
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("TRIOPROXY_CONFIG_DIR", str(tmp_path / value) if value else "")
    assert _validate.main([]) == 2
    first = capsys.readouterr().err.splitlines()[0]
    assert first == "trioproxy validate: " + says.format(dir=tmp_path)


def test_a_file_named_as_the_directory_is_not_a_directory(tmp_path: Path) -> None:
    (tmp_path / "trioproxy.toml").write_text("")
    assert directory_problem(str(tmp_path)) == ""
    file = tmp_path / "trioproxy.toml"
    assert directory_problem(str(file)) == f"{file}: is not a directory"
    assert directory_problem(str(tmp_path / "x")) == f"{tmp_path / 'x'}: no such directory"


def test_an_unknown_log_format_lists_only_real_choices() -> None:
    with pytest.raises(OptionError) as caught:
        resolve({"log_format": "xml"}, {})
    assert str(caught.value) == "--log-format: expected one of text, json, got 'xml'"
