"""The Section module file (.section-proxy.yaml): its documented shape, and agreement with the
Dockerfile, the package version and the command's options."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # (no stubs installed for PyYAML)

from trioproxy import __version__
from trioproxy.config._options import DEFAULT_CONFIG_DIR, OPTIONS, resolve

ROOT = Path(__file__).resolve().parents[2]
MODULE = yaml.safe_load((ROOT / ".section-proxy.yaml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()

METADATA_KEYS = {"name", "image", "httpContainer", "configurationMountPath", "logs"}
CONTAINER_KEYS = {"name", "resources", "env", "command", "volumeMounts"}
PROBES = {"readinessProbe", "livenessProbe", "startupProbe"}
# Measured (bench/measured.json): idle RSS and the cost of one idle keep-alive connection.
MEASURED = json.loads((ROOT / "bench" / "measured.json").read_text())
IDLE_MIB, PER_CONNECTION_KIB = MEASURED["idle_rss_mib"]["single"], MEASURED["idle_connection_kib"]
MAX_CONNECTIONS = 10_000


def _containers() -> dict[str, dict[str, Any]]:
    return {container["name"]: container for container in MODULE["spec"]["containers"]}


def _cpu(quantity: str | int | float) -> float:
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _mebibytes(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi)", quantity)
    assert match, quantity
    number, unit = match.groups()
    return int(number) * units[unit]


def test_the_top_level_and_metadata_blocks() -> None:
    assert set(MODULE) == {"metadata", "spec"}
    metadata = MODULE["metadata"]
    assert METADATA_KEYS <= set(metadata) <= METADATA_KEYS | {"redeployTriggers"}
    assert metadata["name"] == f"trioproxy:{__version__}"
    registry, _, rest = metadata["image"].partition("/")
    assert "." in registry or ":" in registry, "image must be registry-qualified"
    assert rest.rpartition(":")[2] == __version__
    assert metadata["httpContainer"] in _containers()


def test_the_configuration_mount_is_where_the_proxy_reads_it() -> None:
    path = MODULE["metadata"]["configurationMountPath"]
    assert path == "/opt/proxy_config" == DEFAULT_CONFIG_DIR
    assert "mkdir -m 0755 /opt/proxy_config" in DOCKERFILE


def test_the_http_container_serves_port_80_with_the_image_entrypoint() -> None:
    assert re.search(r"^EXPOSE 80$", DOCKERFILE, re.MULTILINE)
    assert 'ENTRYPOINT ["/opt/trioproxy/bin/trioproxy"]' in DOCKERFILE
    http = _containers()[MODULE["metadata"]["httpContainer"]]
    command = http.get("command")
    assert command is None or command[0] in ("trioproxy", "/opt/trioproxy/bin/trioproxy")


def test_logs() -> None:
    logs = MODULE["metadata"]["logs"]
    assert set(logs) <= {"handler", "http", "additional"}
    assert isinstance(logs["handler"], str) and logs["handler"]
    assert logs["http"] == {"container": MODULE["metadata"]["httpContainer"], "stream": "stdout"}
    for extra in logs.get("additional", []):
        assert set(extra) == {"name", "container", "stream"}
        assert extra["container"] in _containers()
        assert extra["stream"] in ("stdout", "stderr")
    assert {"container": "trioproxy", "stream": "stderr"}.items() <= logs["additional"][0].items()


def test_redeploy_triggers() -> None:
    triggers = MODULE["metadata"].get("redeployTriggers", {})
    assert set(triggers) <= {"onAnyModuleFileChanges", "opsVariables"}
    assert isinstance(triggers.get("onAnyModuleFileChanges", False), bool)
    assert all(isinstance(name, str) for name in triggers.get("opsVariables", []))


@pytest.mark.parametrize("name", list(_containers()))
def test_each_container_is_a_restricted_pod_spec_entry(name: str) -> None:
    assert set(MODULE["spec"]) == {"containers"}
    container = _containers()[name]
    assert {"name", "resources"} <= set(container) <= CONTAINER_KEYS | PROBES
    for probe in PROBES & set(container):
        assert set(container[probe]) == {"initialDelaySeconds"}
        assert isinstance(container[probe]["initialDelaySeconds"], int)
    resources = container["resources"]
    assert set(resources) == {"requests", "limits"}
    for side in ("requests", "limits"):
        assert set(resources[side]) == {"cpu", "memory"}
    assert _cpu(resources["requests"]["cpu"]) <= _cpu(resources["limits"]["cpu"])
    requested = _mebibytes(resources["requests"]["memory"])
    assert requested <= _mebibytes(resources["limits"]["memory"])
    if "command" in container:
        assert all(isinstance(word, str) for word in container["command"])


def test_resources_fit_what_was_measured() -> None:
    resources = _containers()["trioproxy"]["resources"]
    assert _mebibytes(resources["requests"]["memory"]) >= IDLE_MIB
    worst_idle = IDLE_MIB + MAX_CONNECTIONS * PER_CONNECTION_KIB / 1024
    assert _mebibytes(resources["limits"]["memory"]) >= worst_idle
    # One trioproxy process runs on one CPU; more than one core is never used.
    assert _cpu(resources["limits"]["cpu"]) <= 1


def test_env_holds_options_the_proxy_accepts() -> None:
    known = {option.env: option.name for option in OPTIONS}
    for container in MODULE["spec"]["containers"]:
        env = container.get("env", [])
        for item in env:
            assert set(item) == {"name", "value"}
            assert item["name"] in known, item
        variables = {item["name"]: str(item["value"]) for item in env}
        resolve(dict.fromkeys(known.values()), variables)  # raises OptionError if not
