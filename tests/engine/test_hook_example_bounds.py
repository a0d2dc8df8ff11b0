"""A hook file's examples run the site's own code at validate time, through the real engine
on the memory network and the autojump clock: an example whose hook hangs, or raises, is a
precise ``file:line`` problem, found in no wall time, and the next example still runs."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

from trioproxy.config._config import load_settings
from trioproxy.hooks._examples import Example, run_examples

HOOK = """
    import trio

    class h:
        async def request(self, exchange):
            await self._misbehave(exchange, "request")

        async def response(self, exchange, response):
            await self._misbehave(exchange, "response")

        async def access(self, exchange, status):
            await self._misbehave(exchange, "access")

        async def _misbehave(self, exchange, point):
            path = exchange.request.path
            if path.startswith("/slow/") or (path == "/bad/hang" and point == "request"):
                await trio.sleep_forever()
            if path == "/bad/raise":
                raise RuntimeError("hook bug")
"""

TOML = """
    [[rules]]
    match.path_prefix = "/bad/"
    hook = { file = "hooks/h.py", name = "h", timeout_s = 60, on_error = 503 }

    [[rules]]
    match.path_prefix = "/slow/"
    hook = { file = "hooks/h.py", name = "h", timeout_s = 50, on_error = "pass" }
"""


def test_an_example_whose_hook_hangs_or_raises_is_named_and_the_rest_run(
    tmp_path: Path,
) -> None:
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "h.py").write_text(textwrap.dedent(HOOK))
    (tmp_path / "trioproxy.toml").write_text(textwrap.dedent(TOML))
    settings = load_settings(tmp_path)
    examples = [
        Example("GET /bad/hang", expect_status=200, line=10),
        # Three points of 50 s each: past what one example may take.
        Example("GET /slow/x", expect_status=200, line=11),
        Example("GET /bad/raise", expect_status=200, line=12),
        Example("GET /fine", expect_status=200, line=13),
    ]
    started = time.monotonic()
    problems = run_examples(settings, [("hooks/h.py", example) for example in examples])
    assert time.monotonic() - started < 5  # minutes of virtual time, in no wall time
    assert problems == [
        "hooks/h.py:10: example 'GET /bad/hang': expected status 200, got 503",
        "hooks/h.py:11: example 'GET /slow/x': did not finish within 120s of virtual time"
        " (each hook point may wait up to its timeout_s)",
        "hooks/h.py:12: example 'GET /bad/raise': expected status 200, got 503",
    ]
