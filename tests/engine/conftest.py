"""Engine tests run without the network: the memory transport, the autojump clock.

Every test here runs with sockets that refuse to bind, listen or connect, so a test that
reaches for the network fails instead of quietly testing something else. (Socket pairs
are allowed: the peer tests compare the socket transport with the memory one.)
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any, NoReturn

import pytest


class _NoNetwork(socket.socket):
    def _refuse(self, *args: Any) -> NoReturn:
        raise AssertionError("an engine test reached for the network; use tests/memnet.py")

    bind = connect = connect_ex = listen = _refuse


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(socket, "socket", _NoNetwork)
    yield
