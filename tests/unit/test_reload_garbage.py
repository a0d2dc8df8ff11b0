"""What a reload leaves behind: nothing that only a full garbage collection would free.

Garbage in a reference cycle waits for a full collection, which runs only after the long-lived
heap has grown by a quarter: every reload made a little (the access-log formatter and its
namespace), so RSS crept with reloads until one ran.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator

import pytest

from trioproxy.app._logwriter import AccessLogWriter
from trioproxy.app._run import AccessLogSink, _Reloader
from trioproxy.config._config import settings_from_bytes
from trioproxy.engine._server import ProxyServer

CONFIG = (
    b'[access_log]\nformat = "%s"\n[[rules]]\nresponse_headers.set = { X-Generation = "%d" }\n'
    b'[[rules]]\nmatch.path = "/api/"\nrate_limit = { rate = 5, burst = 10 }\n'
)


@pytest.fixture
def saved_garbage() -> Iterator[list[object]]:
    """Collected garbage kept in gc.garbage, not freed, while automatic collection is off."""
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def test_a_reload_leaves_no_cyclic_garbage(saved_garbage: list[object]) -> None:
    settings = settings_from_bytes(CONFIG % (b"json", 0), file="t.toml")
    devnull = os.open(os.devnull, os.O_WRONLY)
    writer = AccessLogWriter(fd=devnull)
    try:
        sink = AccessLogSink(settings, writer)
        reloader = _Reloader(ProxyServer(settings, ("127.0.0.1", 9), sink), sink)
        for generation in range(1, 5):
            log_format = b"json" if generation % 2 else b"ltsv"
            new = settings_from_bytes(CONFIG % (log_format, generation), file="t.toml")
            assert "rules" in reloader.apply(new)
        gc.collect()
        assert saved_garbage == []
    finally:
        writer.close(timeout_s=1)
        os.close(devnull)
