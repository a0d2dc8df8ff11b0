"""``trioproxy config`` shows the defaults of keys a rule's action left out (pure)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from trioproxy.config._config import load_config, settings_from_bytes
from trioproxy.config._configdump import render_toml

RULES = b"""\
[[rules]]
match.path = "/respond"
respond = { body = "x" }

[[rules]]
match.path = "/deny"
deny = true

[[rules]]
match.path = "/deny-table"
deny = { body = "no" }

[[rules]]
match.path = "/limit"
rate_limit = { rate = 1, burst = 2 }

[[rules]]
match.path = "/redirect"
redirect = { to = "/new" }

[[rules]]
match.path = "/written"
respond = { status = 204 }
"""


def test_action_defaults_are_shown_and_load_back_the_same(tmp_path: Path) -> None:
    (tmp_path / "trioproxy.toml").write_bytes(RULES)
    settings, data = load_config(tmp_path)
    text = render_toml(settings, data["rules"])
    rules = tomllib.loads(text)["rules"]
    assert rules[0]["respond"] == {"body": "x", "status": 200}
    assert rules[1]["deny"] == {"status": 403}
    assert rules[2]["deny"] == {"body": "no", "status": 403}
    assert rules[3]["rate_limit"] == {"rate": 1, "burst": 2, "max_clients": 20_000}
    assert rules[4]["redirect"] == {"to": "/new", "status": 302}
    assert rules[5]["respond"] == {"status": 204}  # as written: nothing to add
    # The defaults shown are the loader's: the dump compiles to the same rules.
    assert settings_from_bytes(text.encode(), file="-") == settings
