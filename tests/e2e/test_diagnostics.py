"""stderr diagnostics: millisecond times, the request's context on its lines, text or JSON,
and identical upstream failures folded into one line plus a summary per interval."""

from __future__ import annotations

import json
import logging
import re
import signal
from pathlib import Path

from trioproxy.core._accesslog import AccessRecord
from trioproxy.engine._diagnostics import (
    FailureAggregator,
    JsonFormatter,
    TextFormatter,
    request_fields,
)

from ..cli_support import cli_proxy, wait_for_exit
from ..support import Client, unused_address

TEXT_TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d"


def _record(message: str, **extra: str) -> logging.LogRecord:
    record = logging.LogRecord("trioproxy", logging.WARNING, "", 0, message, (), None)
    record.__dict__.update(extra)
    return record


def _context() -> dict[str, str]:
    access = AccessRecord(0.0, "10.0.0.9", request_id=b"req-1")
    return request_fields(access, b"next-hop:80", failure="boom (502)")


def test_text_lines_have_milliseconds_and_the_request_context() -> None:
    line = TextFormatter("trioproxy").format(_record("GET /: boom (502)", **_context()))
    assert re.fullmatch(
        TEXT_TIME + r" WARNING trioproxy: GET /: boom \(502\) "
        r"request_id=req-1 peer=10\.0\.0\.9 upstream=next-hop:80",
        line,
    ), line


def test_json_lines_are_one_object_each() -> None:
    line = JsonFormatter("w1").format(_record("multi\nline", **_context()))
    assert "\n" not in line
    parsed = json.loads(line)
    assert re.fullmatch(TEXT_TIME, parsed.pop("time"))
    assert parsed == {
        "level": "WARNING",
        "message": "multi\nline",
        "request_id": "req-1",
        "peer": "10.0.0.9",
        "upstream": "next-hop:80",
        "worker": "w1",
    }


def test_identical_failures_are_one_line_then_a_summary_per_interval() -> None:
    now = [0.0]
    emitted: list[logging.LogRecord] = []
    aggregator = FailureAggregator(emitted.append, interval_s=10, clock=lambda: now[0])
    passed = [aggregator.filter(_record("x", failure="refused (502)")) for _ in range(8064)]
    assert passed.count(True) == 1
    assert aggregator.filter(_record("other", failure="timed out (504)"))  # its own run
    assert aggregator.filter(_record("no failure key"))
    now[0] = 5.0
    aggregator.flush()  # not an interval yet
    assert emitted == []
    now[0] = 10.0
    aggregator.flush()
    assert [r.getMessage() for r in emitted] == [
        "refused (502): 8,063 more in the last 10 s"
    ]  # the 504 did not repeat: no summary
    # The run goes on: counted, not written again; a failure that stopped starts afresh.
    assert not aggregator.filter(_record("x", failure="refused (502)"))
    now[0] = 20.0
    aggregator.flush()
    assert emitted[-1].getMessage() == "refused (502): 1 more in the last 10 s"
    assert aggregator.filter(_record("other", failure="timed out (504)"))


async def test_a_run_of_502s_is_one_warning_and_a_summary_joined_by_request_id(
    tmp_path: Path,
) -> None:
    # The circuit breaker off: with it, the sixth request on would be a 503 (test_breaker).
    (tmp_path / "trioproxy.toml").write_text("[upstream]\nbreaker_failures = 0\n")
    async with cli_proxy(await unused_address(), config_dir=str(tmp_path)) as proxy:
        async with Client.connect(proxy.address) as client:
            for _ in range(20):
                assert (await client.request(b"GET", b"/down")).status == 502
        await proxy.wait_for_output(lambda: proxy.stdout.count(b"\n") == 20)
        proxy.process.send_signal(signal.SIGTERM)
        assert await wait_for_exit(proxy.process) == 0
    warnings = [line for line in proxy.stderr.decode().splitlines() if " WARNING " in line]
    assert len(warnings) == 2, warnings
    first_request = json.loads(proxy.stdout.decode().splitlines()[0])
    assert f"request_id={first_request['request_id']}" in warnings[0]
    assert "GET /down: cannot connect to upstream 127.0.0.1:" in warnings[0]
    assert re.search(r": 19 more in the last \d+ s upstream=127\.0\.0\.1:\d+$", warnings[1])


async def test_json_diagnostics_from_the_flag_or_the_configuration(tmp_path: Path) -> None:
    (tmp_path / "trioproxy.toml").write_text('[diagnostics]\nformat = "json"\n')
    for args, config_dir in (((), str(tmp_path)), (("--log-format", "json"), None)):
        async with cli_proxy(await unused_address(), *args, config_dir=config_dir) as proxy:
            async with Client.connect(proxy.address) as client:
                await client.request(b"GET", b"/")
            proxy.process.send_signal(signal.SIGTERM)
            assert await wait_for_exit(proxy.process) == 0
        lines = [json.loads(line) for line in proxy.stderr.decode().splitlines()]
        assert {"time", "level", "message"} <= set(lines[0])
        (failure,) = [line for line in lines if line["level"] == "WARNING"]
        assert {"request_id", "peer", "upstream"} <= set(failure)
        assert failure["message"].startswith("GET /: cannot connect to upstream")


async def test_debug_shows_connections_pool_and_rule_decisions(
    origin: tuple[str, int], tmp_path: Path
) -> None:
    (tmp_path / "trioproxy.toml").write_text(
        '[[rules]]\nmatch.path = "/no"\ndeny = { status = 403 }\n'
    )
    async with cli_proxy(origin, "--log-level", "debug", config_dir=str(tmp_path)) as proxy:
        async with Client.connect(proxy.address) as client:
            for target in (b"/a", b"/b", b"/no"):
                await client.request(b"GET", target)
        await proxy.wait_for_output(lambda: b"connection closed" in proxy.stderr)
        proxy.process.send_signal(signal.SIGTERM)
        assert await wait_for_exit(proxy.process) == 0
    text = proxy.stderr.decode()
    for expected in (
        "DEBUG trioproxy: connection opened peer=127.0.0.1",
        "DEBUG trioproxy: pool: new connection to 127.0.0.1:",
        "DEBUG trioproxy: pool: reusing the connection to 127.0.0.1:",
        "DEBUG trioproxy: rules: no rule applies: forwarded as it is request_id=",
        "DEBUG trioproxy: rules: rules[1] answered 403 request_id=",
        "DEBUG trioproxy: connection closed peer=127.0.0.1",
    ):
        assert expected in text, (expected, text)
