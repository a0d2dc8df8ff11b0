"""trioproxy: an HTTP/1.1 reverse proxy on Trio and h11.

The public API, for running the proxy inside your own Trio program or tests::

    proxy = await nursery.start(trioproxy.serve, ("127.0.0.1", 8000))
    async with trioproxy.running(("127.0.0.1", 8000), settings) as proxy: ...
    settings = trioproxy.load_settings("/opt/proxy_config")

and, to export a running proxy's metrics through prometheus-client's registry::

    REGISTRY.register(trioproxy.ProxyCollector(proxy.server.ctx))

Names are imported on first use, so that ``trioproxy.validate`` (the platform's pre-receive
check) does not pay for importing trio and h11.
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

from ._version import __version__ as __version__

__all__ = [
    "AccessRecord",
    "ConfigError",
    "ProxyCollector",
    "RunningProxy",
    "Settings",
    "load_settings",
    "running",
    "serve",
]

_HOMES = {
    "AccessRecord": ".core._accesslog",
    "ConfigError": ".config._config",
    "ProxyCollector": ".engine._collector",
    "RunningProxy": ".app._embed",
    "Settings": ".config._settings",
    "load_settings": ".config._config",
    "running": ".app._embed",
    "serve": ".app._embed",
}

if _typing.TYPE_CHECKING:
    from .app._embed import RunningProxy, running, serve
    from .config._config import ConfigError, load_settings
    from .config._settings import Settings
    from .core._accesslog import AccessRecord
    from .engine._collector import ProxyCollector


def __dir__() -> list[str]:
    # The public API only: the lazy names are not in globals() until first use, and the
    # helpers that are (the imports above) are nobody's business.
    return sorted([*__all__, "__version__"])


def __getattr__(name: str) -> _typing.Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'trioproxy' has no attribute {name!r}")
    value = getattr(_importlib.import_module(_HOMES[name], __name__), name)
    globals()[name] = value
    return value
