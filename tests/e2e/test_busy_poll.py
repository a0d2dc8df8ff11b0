"""Busy polling before the loop sleeps (`engine._busypoll`), in a real trio run on real
sockets: the poll ends at the first event, never polls while a task can run, adapts its
window to the idle periods (and stops after a few long ones); the command installs it,
retunes it on reload, and leaves it out at 0."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
import trio

from trioproxy.config._config import ConfigError, settings_from_bytes
from trioproxy.engine._busypoll import BusyPoll, busy_poll

from ..cli_support import cli_proxy
from ..support import Client

LIMIT_S = 50e-6


def test_the_poll_ends_when_the_descriptor_is_readable() -> None:
    a, b = socket.socketpair()
    with a, b:
        busy = BusyPoll(limit_s=3600.0, readable_fd=a.fileno())
        busy.window_s = 3600.0  # a poll that only the readable descriptor can end
        b.send(b"x")
        busy.before_io_wait(3600.0)  # returns at once: the test would hang otherwise


def test_no_poll_while_a_task_is_runnable() -> None:
    async def main() -> None:  # (`after_io_wait` reads the run's queue: called in one)
        a, b = socket.socketpair()
        with a, b:
            busy = BusyPoll(limit_s=3600.0, readable_fd=a.fileno())
            busy.window_s = 3600.0  # never readable: a poll would outlast the test
            busy.before_io_wait(0.0)
            busy.after_io_wait(0.0)
            assert busy.window_s == 3600.0  # (and untouched: no idle period was seen)

    trio.run(main)


def test_the_window_grows_with_short_idle_periods_and_stops_after_a_long_one() -> None:
    async def main() -> tuple[float, float]:
        busy = busy_poll(None, 1000)  # (the most allowed: a thread's answer is short)
        assert busy is not None
        ours, theirs = socket.socketpair()
        with ours, theirs:
            echo = threading.Thread(target=_echo, args=(theirs,), daemon=True)
            echo.start()
            ours.setblocking(False)
            grown = 0.0
            for _ in range(100):  # each answer comes from another thread: the loop waits
                ours.send(b"x")
                await trio.lowlevel.wait_readable(ours)
                assert ours.recv(1) == b"x"
                # (Four answers in a row within 1 ms reach the limit; a busy machine may
                # delay one now and then, which starts the window again.)
                grown = max(grown, busy.window_s)
            for _ in range(4):  # nothing to do for 20 ms, four times: long, long...
                await trio.sleep(0.02)
            ours.close()  # (the thread reads the end and returns)
            echo.join(timeout=5)
        return grown, busy.window_s

    grown, after_long = trio.run(main)
    assert grown == pytest.approx(1000e-6)
    assert after_long == 0.0


def _echo(sock: socket.socket) -> None:
    while data := sock.recv(1):
        sock.send(data)


def test_zero_installs_nothing_and_retuning_keeps_one_instrument() -> None:
    async def main() -> None:
        assert busy_poll(None, 0) is None
        busy = busy_poll(None, 50)
        assert busy is not None and busy.limit_s == pytest.approx(50e-6)
        assert busy_poll(busy, 200) is busy and busy.limit_s == pytest.approx(200e-6)
        assert busy_poll(busy, 0) is None
        with pytest.raises(KeyError):  # removed: trio no longer holds it
            trio.lowlevel.remove_instrument(busy)

    trio.run(main)


def test_the_setting_defaults_to_fifty_microseconds_and_is_checked() -> None:
    assert settings_from_bytes(b"", file="t.toml").tuning.busy_poll_us == 50
    with pytest.raises(ConfigError, match=r"tuning\.busy_poll_us"):
        settings_from_bytes(b"[tuning]\nbusy_poll_us = 5000\n", file="t.toml")


async def test_the_command_retunes_busy_polling_on_reload(
    origin: tuple[str, int], tmp_path: Path
) -> None:
    config = tmp_path / "trioproxy.toml"
    config.write_text("[tuning]\nbusy_poll_us = 0\n")
    async with cli_proxy(origin, config_dir=str(tmp_path)) as proxy:
        for limit_us in (200, 0, 50):
            config.write_text(f"[tuning]\nbusy_poll_us = {limit_us}\n")
            await proxy.reload(b": ok, ")
            assert b"changed tuning.busy_poll_us" in proxy.stderr.splitlines()[-1]
            assert b"need a restart" not in proxy.stderr
            async with Client.connect(proxy.address) as client:
                for _ in range(3):
                    assert (await client.request(b"GET", b"/")).status == 200
