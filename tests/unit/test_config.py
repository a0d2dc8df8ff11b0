"""trioproxy.toml loading: good files give settings, bad ones every problem, each on one line."""

from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trioproxy.config._config import (
    CONFIG_FILENAME,
    ConfigError,
    Problem,
    load_settings,
    settings_from_bytes,
    settings_from_mapping,
)
from trioproxy.config._configfile import MAX_FILE_BYTES
from trioproxy.config._schema import KNOWN_METADATA
from trioproxy.config._settings import AccessLog, Admin, Settings, Timeouts
from trioproxy.core._accesslog import ACCESS_LOG_FIELDS


def write_config(directory: Path, text: str | bytes) -> Path:
    path = directory / CONFIG_FILENAME
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    return path


def problems_of(directory: Path, text: str | bytes) -> list[Problem]:
    write_config(directory, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(directory)
    return caught.value.problems


def one_problem(directory: Path, text: str | bytes) -> Problem:
    problems = problems_of(directory, text)
    assert len(problems) == 1, problems
    return problems[0]


# --- Every field, generically -------------------------------------------------------------------


def all_keys() -> list[tuple[str, str, dataclasses.Field[Any], Any]]:
    """(section, key, field, type) for every key of the schema."""
    keys = []
    for section in dataclasses.fields(Settings):
        if section.name == "rules":  # an array of tables, with its own loader: test_rules.py
            continue
        cls = typing.get_type_hints(Settings)[section.name]
        hints = typing.get_type_hints(cls)
        keys += [(section.name, f.name, f, hints[f.name]) for f in dataclasses.fields(cls)]
    return keys


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return repr(value)


def other_valid_value(field: dataclasses.Field[Any], tp: Any) -> Any:
    """A valid value for the field that differs from its default."""
    meta, default = field.metadata, field.default
    if tp is bool:
        return not default
    if tp is float or tp is int:
        low, high = meta["min"], meta["max"]
        value = tp(low) if low != default else tp(high)
        assert value != default
        return value
    if "choices" in meta:
        return next(choice for choice in meta["choices"] if choice != default)
    if "subset_of" in meta:
        return tuple(reversed(meta["subset_of"]))[:3]
    if meta.get("loopback_address"):
        return "127.0.0.1:9901"
    if meta.get("networks"):
        return ("10.0.0.0/8", "2001:db8::/32")
    return "edge-1"  # a token for forwarding.via_name


KEYS = all_keys()
KEY_IDS = [f"{section}.{key}" for section, key, _, _ in KEYS]


@pytest.mark.parametrize(("section", "key", "field", "tp"), KEYS, ids=KEY_IDS)
def test_every_key_can_be_set(tmp_path: Path, section: str, key: str, field: Any, tp: Any) -> None:
    value = other_valid_value(field, tp)
    write_config(tmp_path, f"[{section}]\n{key} = {toml_value(value)}\n")
    settings = load_settings(tmp_path)
    loaded = getattr(getattr(settings, section), key)
    assert loaded == value
    assert type(loaded) is typing.get_origin(tp) or type(loaded) is tp
    # Nothing else moved.
    expected_section = dataclasses.replace(getattr(Settings(), section), **{key: value})
    assert dataclasses.replace(settings, **{section: expected_section}) == settings
    assert dataclasses.replace(Settings(), **{section: expected_section}) == settings


@pytest.mark.parametrize(("section", "key", "field", "tp"), KEYS, ids=KEY_IDS)
def test_defaults_written_out_load_as_defaults(
    tmp_path: Path, section: str, key: str, field: Any, tp: Any
) -> None:
    write_config(tmp_path, f"[{section}]\n{key} = {toml_value(field.default)}\n")
    assert load_settings(tmp_path) == Settings()


@pytest.mark.parametrize(("section", "key", "field", "tp"), KEYS, ids=KEY_IDS)
def test_schema_uses_only_what_the_loader_understands(
    section: str, key: str, field: Any, tp: Any
) -> None:
    assert set(field.metadata) <= KNOWN_METADATA
    assert tp in (float, int, bool, str, tuple[str, ...])
    if tp in (float, int):
        assert field.metadata["min"] <= field.default <= field.metadata["max"]


def test_whole_file_with_every_key(tmp_path: Path) -> None:
    sections: dict[str, list[str]] = {}
    for section, key, field, tp in KEYS:
        line = f"{key} = {toml_value(other_valid_value(field, tp))}"
        sections.setdefault(section, []).append(line)
    text = "".join(f"[{name}]\n" + "\n".join(lines) + "\n\n" for name, lines in sections.items())
    write_config(tmp_path, text)
    settings = load_settings(tmp_path)
    for section, key, field, tp in KEYS:
        assert getattr(getattr(settings, section), key) == other_valid_value(field, tp)


# --- Good files ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n\n",
        "# only a comment\n",
        "[timeouts]\n",
        "\ufeff# a byte-order mark from a Windows editor\n",
    ],
    ids=["empty", "blank", "comment", "empty-section", "bom"],
)
def test_files_meaning_defaults(tmp_path: Path, text: str) -> None:
    write_config(tmp_path, text)
    assert load_settings(tmp_path) == Settings()


def test_missing_directory_means_defaults(tmp_path: Path) -> None:
    assert load_settings(tmp_path / "absent") == Settings()


def test_missing_file_means_defaults(tmp_path: Path) -> None:
    assert load_settings(tmp_path) == Settings()
    assert load_settings(str(tmp_path)) == Settings()


def test_integer_seconds_become_floats(tmp_path: Path) -> None:
    write_config(tmp_path, "[timeouts]\ndrain_s = 5\n")
    drain_s = load_settings(tmp_path).timeouts.drain_s
    assert drain_s == 5.0
    assert type(drain_s) is float


def test_dotted_keys_and_inline_tables(tmp_path: Path) -> None:
    write_config(
        tmp_path,
        'timeouts.drain_s = 1\nupstream = { pool_size = 7 }\n"limits".max_header_count = 9\n',
    )
    settings = load_settings(tmp_path)
    assert settings.timeouts == Timeouts(drain_s=1.0)
    assert settings.upstream.pool_size == 7
    assert settings.limits.max_header_count == 9


def test_fields_keep_their_order(tmp_path: Path) -> None:
    write_config(tmp_path, '[access_log]\nformat = "ltsv"\nfields = ["status", "time"]\n')
    assert load_settings(tmp_path).access_log == AccessLog("ltsv", ("status", "time"))


@pytest.mark.parametrize(
    "listen",
    ["", "127.0.0.1:9901", "127.10.20.30:1", "[::1]:65535", "localhost:9901", "LocalHost:8080"],
)
def test_loopback_listen_addresses(tmp_path: Path, listen: str) -> None:
    write_config(tmp_path, f'[admin]\nlisten = "{listen}"\n')
    assert load_settings(tmp_path).admin == Admin(listen)


def test_via_name_may_be_empty(tmp_path: Path) -> None:
    write_config(tmp_path, '[forwarding]\nvia_name = ""\n')
    assert load_settings(tmp_path).forwarding.via_name == ""


# --- Bad values: each message names file, line, key, what was found and what is allowed --------

BAD_VALUES = [
    # (toml, line, key path, fragments the message must contain)
    (
        "# comment\n[timeouts]\nconect_s = 5\n",
        3,
        "timeouts.conect_s",
        ["unknown key", "did you mean 'timeouts.upstream_connect_s'?"],
    ),
    (
        "[timeouts]\nupstream_connect_s = 0\n",
        2,
        "timeouts.upstream_connect_s",
        ["expected a number from 0.1 to 600 (seconds)", "found 0"],
    ),
    (
        '[timeouts]\ndrain_s = "5"\n',
        2,
        "timeouts.drain_s",
        ["expected a number from 0 to 3600 (seconds)", 'found string "5"'],
    ),
    (
        "[timeouts]\n\n\nclient_idle_s = true\n",
        4,
        "timeouts.client_idle_s",
        ["expected a number", "found boolean true"],
    ),
    (
        "[timeouts]\ndrain_s = nan\n",
        2,
        "timeouts.drain_s",
        ["expected a number", "found float nan"],
    ),
    ("[timeouts]\ndrain_s = inf\n", 2, "timeouts.drain_s", ["from 0 to 3600", "found inf"]),
    (
        "[timeouts]\npool_size = 3\n",
        2,
        "timeouts.pool_size",
        ["unknown key", "did you mean 'upstream.pool_size'?"],
    ),
    (
        "[timeouts]\nfrobnicate = 3\n",
        2,
        "timeouts.frobnicate",
        ["unknown key", "[timeouts] allows: client_header_s, ", "drain_s"],
    ),
    ("pool_size = 3\n", 1, "pool_size", ["unknown key", "did you mean 'upstream.pool_size'?"]),
    ("[timeout]\ndrain_s = 1\n", 1, "timeout", ["unknown section", "did you mean 'timeouts'?"]),
    ("[zzz]\n", 1, "zzz", ["unknown section", "allowed sections: timeouts, upstream, limits"]),
    ("timeouts = 5\n", 1, "timeouts", ["expected a table ([timeouts] section)", "integer 5"]),
    ("[[timeouts]]\n", 1, "timeouts", ["expected a table", "found an array of tables"]),
    (
        "[upstream]\npool_size = 2.0\n",
        2,
        "upstream.pool_size",
        ["expected an integer from 1 to 65536", "found float 2.0"],
    ),
    (
        "[upstream]\npool_size = true\n",
        2,
        "upstream.pool_size",
        ["expected an integer", "found boolean true"],
    ),
    (
        "[upstream]\npool_size = 70000\n",
        2,
        "upstream.pool_size",
        ["expected an integer from 1 to 65536", "found 70000"],
    ),
    (
        "[limits]\nmax_header_bytes = { a = 1 }\n",
        2,
        "limits.max_header_bytes",
        ["expected an integer from 1024 to 16777216 (bytes)", "found a table"],
    ),
    (
        "[forwarding]\nappend_x_forwarded_for = 1\n",
        2,
        "forwarding.append_x_forwarded_for",
        ["expected true or false", "found integer 1"],
    ),
    (
        '[forwarding]\nvia_name = "my proxy"\n',
        2,
        "forwarding.via_name",
        ["expected an HTTP token", 'found "my proxy"'],
    ),
    (
        "[forwarding]\nvia_name = 1\n",
        2,
        "forwarding.via_name",
        ["expected an HTTP token", "found integer 1"],
    ),
    (
        '[access_log]\nformat = "JSON"\n',
        2,
        "access_log.format",
        ['expected one of "json", "ltsv"', 'found "JSON"'],
    ),
    (
        '[access_log]\nfields = ["time", "stauts"]\n',
        2,
        "access_log.fields",
        ['unknown entry "stauts" (did you mean "status"?)', 'allowed: "time", "time_taken_ms"'],
    ),
    (
        '[access_log]\nfields = ["time", "bytes", "time"]\n',
        2,
        "access_log.fields",
        ["each entry may appear once", 'found "time" repeated'],
    ),
    ("[access_log]\nfields = []\n", 2, "access_log.fields", ["expected at least one of", "[]"]),
    (
        '[access_log]\nfields = "time"\n',
        2,
        "access_log.fields",
        ["expected an array of strings", 'found string "time"'],
    ),
    (
        '[access_log]\nfields = ["time", 1]\n',
        2,
        "access_log.fields",
        ["expected an array of strings", 'found array ["time", 1]'],
    ),
    (
        '[admin]\nlisten = "0.0.0.0:9901"\n',
        2,
        "admin.listen",
        ["only a loopback address is allowed", "exposes only port 80", 'found "0.0.0.0:9901"'],
    ),
    ('[admin]\nlisten = "[::]:9901"\n', 2, "admin.listen", ["only a loopback address"]),
    ('[admin]\nlisten = "10.0.0.1:9901"\n', 2, "admin.listen", ["only a loopback address"]),
    ('[admin]\nlisten = "9901"\n', 2, "admin.listen", ['expected "" (off) or HOST:PORT']),
    ('[admin]\nlisten = ":9901"\n', 2, "admin.listen", ["HOST:PORT"]),
    ('[admin]\nlisten = "::1:9901"\n', 2, "admin.listen", ["needs brackets: [::1]:PORT"]),
    ('[admin]\nlisten = "127.0.0.1:0"\n', 2, "admin.listen", ["PORT from 1 to 65535"]),
    ('[admin]\nlisten = "127.0.0.1:65536"\n', 2, "admin.listen", ["PORT from 1 to 65535"]),
    ('[admin]\nlisten = "127.0.0.1:+99"\n', 2, "admin.listen", ["PORT from 1 to 65535"]),
    ('[admin]\nlisten = "127.0.0.1:' + "9" * 5000 + '"\n', 2, "admin.listen", ["PORT from 1"]),
    ('[admin]\nlisten = "127.0.0.1:80"\n', 2, "admin.listen", ["port 80 is the proxy's public"]),
    ('[admin]\nlisten = "example.com:9901"\n', 2, "admin.listen", ["other than localhost"]),
    ('[admin]\nlisten = "127.000.0.1:9901"\n', 2, "admin.listen", ["HOST 127.x.y.z"]),
    # Where a key has no line of its own, the enclosing one is used.
    ('upstream = { pool_size = "x" }\n', 1, "upstream.pool_size", ['found string "x"']),
    ('\ntimeouts.drain_s = "x"\n', 2, "timeouts.drain_s", ['found string "x"']),
    ('[ "timeouts" ]  # quoted\n"drain_s" = "x"\n', 2, "timeouts.drain_s", ['found string "x"']),
    # Values are quoted onto one line, and shortened.
    (
        '[forwarding]\nvia_name = "a\\nb"\n',
        2,
        "forwarding.via_name",
        ['found "a\\nb"'],
    ),
    (
        '[forwarding]\nvia_name = "' + "x " * 100 + '"\n',
        2,
        "forwarding.via_name",
        ['"x x x', "..."],
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "key_path", "fragments"), BAD_VALUES, ids=[case[2] for case in BAD_VALUES]
)
def test_bad_values(
    tmp_path: Path, text: str, line: int, key_path: str, fragments: list[str]
) -> None:
    problem = one_problem(tmp_path, text)
    file = str(tmp_path / CONFIG_FILENAME)
    assert (problem.file, problem.line, problem.key_path) == (file, line, key_path)
    rendered = str(problem)
    assert rendered.startswith(f"{file}:{line}: {key_path}: ")
    assert "\n" not in rendered
    for fragment in fragments:
        assert fragment in rendered


def test_the_documented_example(tmp_path: Path) -> None:
    problem = one_problem(tmp_path, "[timeouts]\nclient_idle_s = 5\nconect_s = 5\n")
    assert str(problem) == (
        f"{tmp_path / CONFIG_FILENAME}:3: timeouts.conect_s: unknown key;"
        " did you mean 'timeouts.upstream_connect_s'?"
    )


def test_every_problem_is_reported_in_file_order(tmp_path: Path) -> None:
    text = (
        "[timeouts]\n"
        "conect_s = 5\n"  # 2
        'drain_s = "5"\n'  # 3
        "[timeout]\n"  # 4
        "x = 1\n"
        "[access_log]\n"
        'format = "xml"\n'  # 7
        "[admin]\n"
        'listen = "0.0.0.0:1"\n'  # 9
    )
    problems = problems_of(tmp_path, text)
    assert [(p.line, p.key_path) for p in problems] == [
        (2, "timeouts.conect_s"),
        (3, "timeouts.drain_s"),
        (4, "timeout"),
        (7, "access_log.format"),
        (9, "admin.listen"),
    ]
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path)
    assert str(caught.value).splitlines() == [str(p) for p in problems]


def test_a_multiline_string_does_not_confuse_line_numbers(tmp_path: Path) -> None:
    text = '[forwarding]\nvia_name = """\ndrain_s = 1\n"""\n[timeouts]\ndrain_s = "x"\n'
    problems = problems_of(tmp_path, text)
    assert [(p.line, p.key_path) for p in problems] == [
        (2, "forwarding.via_name"),
        (6, "timeouts.drain_s"),
    ]


# --- Bad files ----------------------------------------------------------------------------------


def test_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    problem = one_problem(tmp_path, "[timeouts]\ndrain_s = 5\nconnect_s = = 1\n")
    assert problem.line == 3
    assert problem.key_path == ""
    assert "invalid TOML" in problem.message
    assert "(column 13)" in problem.message
    assert str(problem).startswith(f"{tmp_path / CONFIG_FILENAME}:3: invalid TOML: ")


def test_syntax_error_at_end_of_file(tmp_path: Path) -> None:
    problem = one_problem(tmp_path, "[timeouts]\ndrain_s =")
    assert problem.line == 2
    assert "at end of file" in problem.message


@pytest.mark.parametrize("end", ["\n", ""], ids=["newline", "no-newline"])
def test_duplicate_key_names_the_repeat(tmp_path: Path, end: str) -> None:
    problem = one_problem(tmp_path, f"[timeouts]\ndrain_s = 1\n\ndrain_s = 2{end}")
    assert (problem.line, problem.key_path) == (4, "timeouts.drain_s")
    assert "already set on line 2" in problem.message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("a = " + "[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("a = " + "{b=" * 5000 + "1" + "}" * 5000, "nested too deeply"),
        ("a = " + "1" * 5000, "digits"),
    ],
    ids=["arrays", "tables", "long-number"],
)
def test_pathological_toml_is_a_problem_not_a_crash(
    tmp_path: Path, text: str, fragment: str
) -> None:
    problem = one_problem(tmp_path, text)
    assert problem.message.startswith("invalid TOML: ")
    assert fragment in problem.message


def test_huge_numbers_are_out_of_range(tmp_path: Path) -> None:
    problem = one_problem(tmp_path, "[upstream]\npool_size = 99999999999999999999999\n")
    assert str(problem).endswith("found 99999999999999999999999")
    problem = one_problem(tmp_path, "[timeouts]\ndrain_s = 1e400\n")
    assert str(problem).endswith("found inf")


def test_not_utf8(tmp_path: Path) -> None:
    problem = one_problem(tmp_path, b'[forwarding]\nvia_name = "caf\xe9"\n')
    assert problem.line == 2
    assert "not UTF-8" in problem.message
    assert "0xe9 at column 16" in problem.message


def test_binary_garbage(tmp_path: Path) -> None:
    problem = one_problem(tmp_path, b"\x7fELF\x02\x01\x01\x00\x00\x00")
    assert (problem.line, problem.key_path) == (1, "")
    assert "binary file" in problem.message


def test_directory_instead_of_file(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILENAME).mkdir()
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path)
    assert [str(p) for p in caught.value.problems] == [
        f"{tmp_path / CONFIG_FILENAME}: is a directory, expected a TOML file"
    ]


def test_fifo_does_not_hang(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / CONFIG_FILENAME)
    with pytest.raises(ConfigError, match="is not a regular file"):
        load_settings(tmp_path)


def test_dangling_symlink(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILENAME).symlink_to(tmp_path / "elsewhere.toml")
    with pytest.raises(ConfigError, match="symbolic link to a missing file"):
        load_settings(tmp_path)


def test_symlink_to_a_file_is_followed(tmp_path: Path) -> None:
    (tmp_path / "real.toml").write_text("[upstream]\npool_size = 3\n")
    (tmp_path / CONFIG_FILENAME).symlink_to(tmp_path / "real.toml")
    assert load_settings(tmp_path).upstream.pool_size == 3


def test_config_dir_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "proxy_config").write_text("")
    with pytest.raises(ConfigError, match=r"proxy_config: is not a directory$"):
        load_settings(tmp_path / "proxy_config")


def test_too_large(tmp_path: Path) -> None:
    problem = one_problem(tmp_path, "#" * (MAX_FILE_BYTES + 1))
    assert "larger than" in problem.message


@pytest.mark.skipif(
    os.geteuid() == 0,
    reason="root reads chmod 000 files; test_validate_cli covers it with privileges dropped",
)
def test_unreadable_file(tmp_path: Path) -> None:
    write_config(tmp_path, "").chmod(0)
    with pytest.raises(ConfigError, match="cannot be read: permission denied"):
        load_settings(tmp_path)


# --- The pure entry point and the problem type --------------------------------------------------


def test_settings_from_mapping_without_source_text() -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping({"upstream": {"pool_size": 0}}, file="f.toml", source_text=None)
    (problem,) = caught.value.problems
    assert (
        str(problem) == "f.toml: upstream.pool_size: expected an integer from 1 to 65536, found 0"
    )


def test_settings_from_mapping_good() -> None:
    data = {"access_log": {"fields": list(ACCESS_LOG_FIELDS[:2])}}
    settings = settings_from_mapping(data, file="f.toml", source_text=None)
    assert settings.access_log.fields == ACCESS_LOG_FIELDS[:2]


def test_problem_is_always_one_line() -> None:
    problem = Problem("dir\nwith newline/trioproxy.toml", None, "", "broken\r\n")
    assert str(problem) == "dir\\nwith newline/trioproxy.toml: broken\\r\\n"
    assert str(Problem("f", 3, "a.b", "m")) == "f:3: a.b: m"


# --- Properties: whatever the input, settings or problems, never another exception --------------


def assert_well_formed(error: ConfigError) -> None:
    assert error.problems
    for problem in error.problems:
        assert "\n" not in str(problem)
        assert str(problem).startswith("f.toml")


@given(st.binary(max_size=300))
def test_any_bytes_give_settings_or_problems(raw: bytes) -> None:
    try:
        settings_from_bytes(raw, file="f.toml")
    except ConfigError as error:
        assert_well_formed(error)


TOML_ISH = st.lists(
    st.sampled_from(
        [
            "[timeouts]",
            "[upstream]",
            "[access_log]",
            "[admin]",
            "[x]",
            "[[timeouts]]",
            "\n",
            "drain_s",
            "pool_size",
            "fields",
            "listen",
            "format",
            "via_name",
            " = ",
            "=",
            "1",
            "1.5",
            "-3",
            "true",
            '"json"',
            '"127.0.0.1:1"',
            '["time"]',
            "[",
            "]",
            "{",
            "}",
            ",",
            '"',
            "'",
            '"""',
            "#",
            ".",
            "nan",
            "inf",
            "\ufeff",
            "\xe9",
            "\t",
        ]
    ),
    max_size=40,
).map("".join)


@given(TOML_ISH)
def test_toml_ish_text_gives_settings_or_problems(text: str) -> None:
    try:
        settings_from_bytes(text.encode(), file="f.toml")
    except ConfigError as error:
        assert_well_formed(error)


SECTION_NAMES = st.sampled_from([f.name for f in dataclasses.fields(Settings)]) | st.text(
    max_size=8
)
KEY_NAMES = st.sampled_from([key for _, key, _, _ in KEYS]) | st.text(max_size=8)
VALUES = st.recursive(
    st.none().map(lambda _: 0)
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["127.0.0.1:9901", "json", "ltsv", "time"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=50)  # each example runs difflib over every unknown name
@given(
    st.dictionaries(
        SECTION_NAMES, st.dictionaries(KEY_NAMES, VALUES, max_size=4) | VALUES, max_size=4
    )
)
def test_any_mapping_gives_settings_or_problems(data: dict[str, Any]) -> None:
    try:
        settings = settings_from_mapping(data, file="f.toml", source_text=None)
    except ConfigError as error:
        assert_well_formed(error)
        assert all(problem.line is None for problem in error.problems)
    else:
        assert isinstance(settings, Settings)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ('["10.0.0.1/8"]', 'did you mean "10.0.0.0/8"?'),
        ('["proxy.example"]', 'expected an IP network such as "10.0.0.0/8"'),
        ('"10.0.0.0/8"', "expected an array of strings"),
    ],
)
def test_trusted_proxies_must_be_networks(tmp_path: Path, value: str, says: str) -> None:
    write_config(tmp_path, f"[forwarding]\ntrusted_proxies = {value}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path)
    (problem,) = caught.value.problems
    assert problem.key_path == "forwarding.trusted_proxies"
    assert says in problem.message
