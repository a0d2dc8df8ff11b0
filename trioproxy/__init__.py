"""trioproxy: an HTTP/1.1 reverse proxy on Trio and h11.

The public API, for running the proxy inside your own Trio program or tests::

    proxy = await nursery.start(trioproxy.serve, ("127.0.0.1", 8000))
    async with trioproxy.running(("127.0.0.1", 8000), settings) as proxy: ...
    settings = trioproxy.load_settings("/opt/proxy_config")

Names are imported on first use, so that ``trioproxy.validate`` (the platform's pre-receive
check) does not pay for importing trio and h11.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__ as __version__

__all__ = [
    "AccessRecord",
    "ConfigError",
    "RunningProxy",
    "Settings",
    "load_settings",
    "running",
    "serve",
]

_HOMES = {
    "AccessRecord": ".core._accesslog",
    "ConfigError": ".config._config",
    "RunningProxy": ".app._embed",
    "Settings": ".config._settings",
    "load_settings": ".config._config",
    "running": ".app._embed",
    "serve": ".app._embed",
}

if TYPE_CHECKING:
    from .app._embed import RunningProxy, running, serve
    from .config._config import ConfigError, load_settings
    from .config._settings import Settings
    from .core._accesslog import AccessRecord


def __dir__() -> list[str]:
    # The lazy names are not in globals() until first use; dir() should list them anyway.
    return sorted({*globals(), *__all__})


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'trioproxy' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name], __name__), name)
    globals()[name] = value
    return value
