"""``forwarding.trusted_proxies``: every bad entry is reported, not only the first."""

from __future__ import annotations

import pytest

from trioproxy.config._config import ConfigError, settings_from_bytes


def test_every_bad_entry_is_one_problem() -> None:
    text = b'[forwarding]\ntrusted_proxies = ["10.0.0.0/33", "10.0.0.0/8", "bogus", "10.1.1.1/8"]\n'
    with pytest.raises(ConfigError) as caught:
        settings_from_bytes(text, file="t.toml")
    problems = [str(problem) for problem in caught.value.problems]
    assert len(problems) == 3, problems
    assert all(p.startswith("t.toml:2: forwarding.trusted_proxies: ") for p in problems)
    assert problems[0].endswith('found "10.0.0.0/33"')
    assert problems[1].endswith('found "bogus"')
    assert problems[2].endswith('found "10.1.1.1/8"; did you mean "10.0.0.0/8"?')


def test_good_entries_pass() -> None:
    text = b'[forwarding]\ntrusted_proxies = ["10.0.0.0/8", "2001:db8::/32"]\n'
    settings = settings_from_bytes(text, file="t.toml")
    assert settings.forwarding.trusted_proxies == ("10.0.0.0/8", "2001:db8::/32")
