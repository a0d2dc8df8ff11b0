"""Idle memory of the command: keep modules it never uses out, give startup's garbage back.

trio imports ``ssl`` (for its TLS streams) and ``hmac`` (for DTLS cookies) when it is
imported, and with them OpenSSL's libssl and libcrypto: about 5 MiB of a 30 MiB process that
never speaks TLS (the platform terminates it before the proxy); ``idna`` (its tables and
``unicodedata``), which trio needs only for a host name that is not ASCII; and ``tempfile`` and
``shutil`` (with ``bz2`` and ``lzma``), which ``ctypes.util`` (imported by trio to name its
threads) uses only when ``ldconfig`` cannot find a library.
`defer_unused_imports`, called before trio is imported, puts a stand-in for each in
``sys.modules`` that imports the real module on first use of any attribute, so code that does
use them still works, only later.
`trim` empties the caches only startup filled and hands the C heap that imports and startup
freed back to the kernel (glibc's ``malloc_trim``). Neither changes what the proxy does; both
only run in the command, never when trioproxy is imported as a library.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import importlib.machinery
import sys
import types
from typing import Any

__all__ = ["DEFERRED", "defer_unused_imports", "trim"]

DEFERRED = ("ssl", "hmac", "idna", "tempfile", "shutil")


class _Deferred(types.ModuleType):
    """Imports the module it stands for on first attribute access, then delegates to it."""

    def __getattr__(self, name: str) -> Any:
        real = sys.modules.get(self.__name__)
        if real is self or real is None:
            # (None: another thread is swapping it right now; the import system makes this
            # one wait for that import to finish, and both get the one module.)
            sys.modules.pop(self.__name__, None)
            real = importlib.import_module(self.__name__)
        return getattr(real, name)


def defer_unused_imports() -> None:
    for name in DEFERRED:
        if name not in sys.modules:
            stand_in = sys.modules[name] = _Deferred(name)
            # The real module's spec, found without importing it: `importlib.util.find_spec`
            # (a library asking whether an optional module is there) raises for a module in
            # sys.modules whose __spec__ is None.
            stand_in.__spec__ = importlib.machinery.PathFinder.find_spec(name)


def trim() -> None:
    """Return the freed C heap to the kernel, where the C library can (glibc)."""
    import ctypes  # trio has imported it already
    import linecache
    import re

    # Caches only startup filled: the source attrs keeps of the methods it generated for
    # trio's classes (for tracebacks through them), and patterns compiled once.
    linecache.clearcache()
    re.purge()
    gc.collect()  # startup's cycles (imports, argument parsing) first

    with contextlib.suppress(OSError, AttributeError):  # musl, macOS: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)
