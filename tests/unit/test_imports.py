"""What the proxy's own code path imports: no metrics library with the admin listener off,
nothing of the demo or the test helpers ever."""

from __future__ import annotations

import subprocess
import sys

import pytest

_NEVER = ("hypercorn", "trio_websocket", "wsproto", "pytest", "hypothesis")


def _imported(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    return set(result.stdout.split())


@pytest.mark.parametrize(
    "module", ["trioproxy.app._cli", "trioproxy.engine._server", "trioproxy.app._workers"]
)
def test_the_proxy_path_imports_no_metrics_library_and_no_test_helpers(module: str) -> None:
    imported = _imported(f"import {module}")
    assert module in imported
    unwanted = {m for m in imported if m.split(".")[0] in ("prometheus_client", *_NEVER)}
    assert unwanted == set()


def test_a_scrape_does_not_import_prometheus_client() -> None:
    imported = _imported(
        "from trioproxy.engine._exposition import exposition\n"
        "from trioproxy.engine._metrics import RequestMetrics\n"
        "exposition(RequestMetrics().snapshot())"
    )
    assert "trioproxy.engine._exposition" in imported
    assert "prometheus_client" not in imported


def test_the_supervisor_imports_neither_trio_nor_the_configuration_loader() -> None:
    imported = _imported(
        "import trioproxy.app._cli, trioproxy.app._supervisor, trioproxy.app._superadmin, "
        "trioproxy.core._sharedbuckets, trioproxy.engine._adminbind"
    )
    heavy = {"trio", "h11", "tomllib", "prometheus_client"}
    heavy |= {
        "trioproxy.config._config",
        "trioproxy.config._schema",
        "trioproxy.core._rulemodel",
        "trioproxy.core._ruleengine",
    }
    assert heavy & imported == set()
