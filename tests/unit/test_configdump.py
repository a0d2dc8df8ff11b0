"""``trioproxy config``'s TOML: every key with its value in force, and it loads back to the same
settings (pure)."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from trioproxy.config._config import load_config, settings_from_bytes
from trioproxy.config._configdump import render_toml
from trioproxy.config._settings import Settings

from ..e2e.test_rules import RULES

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_show_every_key() -> None:
    text = render_toml(Settings())
    data = tomllib.loads(text)
    for section in dataclasses.fields(Settings):
        if section.name == "rules":
            continue
        keys = {f.name for f in dataclasses.fields(getattr(Settings(), section.name))}
        assert set(data[section.name]) == keys
    assert settings_from_bytes(text.encode(), file="-") == Settings()


@pytest.mark.parametrize(
    "source",
    [
        (ROOT / "examples" / "config" / "trioproxy.toml").read_bytes(),
        RULES,
        b'[[rules]]\nmatch.path = "/q"\n'
        b'respond = { status = 200, body = "a\\"\\\\\\n\\u007f\\u00e9" }\n',
        b"[[rules]]\nmatch.header_equals = { \"X.A\" = 'v' }\ndeny = true\n",
    ],
    ids=["example", "e2e-rules", "escapes", "quoted-key"],
)
def test_round_trip(tmp_path: Path, source: bytes) -> None:
    (tmp_path / "trioproxy.toml").write_bytes(source)
    settings, data = load_config(tmp_path)
    text = render_toml(settings, data.get("rules", []))
    assert settings_from_bytes(text.encode(), file="-") == settings
