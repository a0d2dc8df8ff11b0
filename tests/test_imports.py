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


@pytest.mark.parametrize("module", ["trioproxy._cli", "trioproxy._server", "trioproxy._workers"])
def test_the_proxy_path_imports_no_metrics_library_and_no_test_helpers(module: str) -> None:
    imported = _imported(f"import {module}")
    assert module in imported
    unwanted = {m for m in imported if m.split(".")[0] in ("prometheus_client", *_NEVER)}
    assert unwanted == set()


def test_a_scrape_does_not_import_prometheus_client() -> None:
    imported = _imported(
        "from trioproxy._metrics import RequestMetrics, exposition\n"
        "exposition(RequestMetrics().snapshot())"
    )
    assert "trioproxy._exposition" in imported
    assert "prometheus_client" not in imported


def test_the_supervisor_imports_neither_trio_nor_the_configuration_loader() -> None:
    imported = _imported(
        "import trioproxy._cli, trioproxy._supervisor, trioproxy._superadmin, "
        "trioproxy._sharedbuckets, trioproxy._adminbind"
    )
    heavy = {"trio", "h11", "tomllib", "prometheus_client", "trioproxy._config", "trioproxy._rules"}
    assert heavy & imported == set()
