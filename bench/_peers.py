"""Optional peer candidates: proxy.py's reverse-proxy plugin and ``mitmdump --mode reverse``.

Neither is a dependency of the project. Each is looked for in the bench's own interpreter
and PATH, then in a separate virtualenv (``--peers-venv``, default ``.venv-peers`` at the
repo root) so that their pins (mitmproxy pins h11, among others) never change the parser
trioproxy is measured on::

    python3 -m venv .venv-peers && .venv-peers/bin/pip install proxy.py mitmproxy

proxy.py runs ``--threaded`` with one acceptor, as it was first measured, its routes in a
small plugin module written into the run's temp dir, log level ERROR (no access log).
mitmdump runs quiet (``-q``, ``flow_detail=0``, ``termlog_verbosity=error``). Both are
started in their own process group, which the registry kills whole: proxy.py leaves a
child process behind when only its parent is killed.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

PEER_NAMES: tuple[str, ...] = ("proxy.py", "mitmdump")
REPO = Path(__file__).resolve().parent.parent
DEFAULT_PEERS_VENV = REPO / ".venv-peers"
INSTALL_HINT = "python3 -m venv .venv-peers && .venv-peers/bin/pip install proxy.py mitmproxy"


@dataclass(frozen=True)
class Peer:
    name: str
    argv_prefix: list[str]  # the program; the caller adds the listen/upstream arguments
    where: str  # for the notes: which interpreter or file


def find_peer(name: str, venv: Path) -> Peer | None:
    """The peer's command, or None when it is not installed where the bench looks."""
    venv_bin = venv / "bin"
    if name == "proxy.py":
        if importlib.util.find_spec("proxy") is not None:
            return Peer(name, [sys.executable, "-m", "proxy"], sys.executable)
        python = venv_bin / "python"
        if (venv_bin / "proxy").is_file() and python.is_file():
            return Peer(name, [str(python), "-m", "proxy"], str(python))
        return None
    if name == "mitmdump":
        found = shutil.which("mitmdump") or shutil.which("mitmdump", path=str(venv_bin))
        return Peer(name, [found], found) if found else None
    raise ValueError(f"unknown peer {name!r}")


def proxypy_plugin(workdir: Path, origin_port: int, paths: list[str]) -> tuple[Path, str]:
    """Write the routes plugin; (directory for PYTHONPATH, dotted class name)."""
    routes = ",\n".join(
        f"            (r'^{path.replace('.', '[.]')}$', [b'http://127.0.0.1:{origin_port}{path}'])"
        for path in paths
    )
    plugin_dir = workdir / "proxypy-plugin"
    plugin_dir.mkdir(parents=True, exist_ok=True)
    (plugin_dir / "bench_reverse_routes.py").write_text(
        f'''"""proxy.py reverse-proxy routes to the bench's origin (written by bench/_peers.py)."""
from proxy.http.server import ReverseProxyBasePlugin


class BenchRoutes(ReverseProxyBasePlugin):
    def routes(self):
        return [
{routes},
        ]
'''
    )
    return plugin_dir, "bench_reverse_routes.BenchRoutes"


def proxypy_argv(
    peer: Peer, workdir: Path, port: int, origin_port: int, paths: list[str]
) -> tuple[list[str], dict[str, str]]:
    plugin_dir, plugin = proxypy_plugin(workdir, origin_port, paths)
    data_dir = workdir / "proxypy-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        *peer.argv_prefix,
        "--hostname",
        "127.0.0.1",
        "--port",
        str(port),
        "--enable-reverse-proxy",
        "--plugins",
        plugin,
        "--threaded",
        "--num-acceptors",
        "1",
        "--num-workers",
        "1",
        "--log-level",
        "ERROR",
        "--data-dir",
        str(data_dir),
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(plugin_dir), env.get("PYTHONPATH", "")) if p
    )
    return argv, env


def mitmdump_argv(peer: Peer, workdir: Path, port: int, origin_port: int) -> list[str]:
    confdir = workdir / "mitmproxy-conf"  # its CA certificate goes here, not into ~/.mitmproxy
    confdir.mkdir(parents=True, exist_ok=True)
    return [
        *peer.argv_prefix,
        "--mode",
        f"reverse:http://127.0.0.1:{origin_port}",
        "--listen-host",
        "127.0.0.1",
        "--listen-port",
        str(port),
        "-q",
        "--set",
        "flow_detail=0",
        "--set",
        "termlog_verbosity=error",
        "--set",
        f"confdir={confdir}",
    ]
