"""What ``import trioproxy`` offers: the public names, each importable, and nothing else listed."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

import trioproxy
from trioproxy.config._settings import Admin, Settings
from trioproxy.engine._collector import ProxyCollector
from trioproxy.engine._server import ProxyServer


def test_dir_lists_the_public_api_only() -> None:
    assert dir(trioproxy) == sorted([*trioproxy.__all__, "__version__"])
    for helper in ("Any", "TYPE_CHECKING", "importlib", "annotations"):
        assert helper not in dir(trioproxy)


def test_every_public_name_is_importable() -> None:
    for name in trioproxy.__all__:
        assert getattr(trioproxy, name) is not None, name


def test_proxy_collector_is_public() -> None:
    assert "ProxyCollector" in trioproxy.__all__
    assert trioproxy.ProxyCollector is ProxyCollector


def _help_lines() -> dict[str, str]:
    settings = Settings(admin=Admin(listen="127.0.0.1:0"))
    server = ProxyServer(settings, ("127.0.0.1", 9), lambda record: None)
    registry = CollectorRegistry()
    registry.register(trioproxy.ProxyCollector(server.ctx))  # as an embedder registers it
    lines = generate_latest(registry).decode().splitlines()
    helps = (line.split(" ", 3)[2:] for line in lines if line.startswith("# HELP "))
    return dict(helps)


def test_the_pool_size_help_says_it_bounds_idle_connections() -> None:
    text = _help_lines()["trioproxy_upstream_pool_size"]
    assert text.startswith("Idle upstream connections kept for reuse")
