"""limits.max_connections fitted to a memory limit (config._memfit): pure numbers."""

from __future__ import annotations

from dataclasses import replace

import pytest

from trioproxy.config._memfit import (
    PROCESS_BYTES,
    SUPERVISOR_BYTES,
    USABLE_SHARE,
    KiB,
    MiB,
    binding_limit,
    connection_bytes,
    fit_settings,
    fitting_connections,
    parse_memory_limit,
)
from trioproxy.config._settings import Limits, Settings

V1_UNLIMITED = "9223372036854771712\n"  # what cgroup v1 says for "no limit"


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("268435456\n", 256 * MiB),
        ("max\n", None),
        (V1_UNLIMITED, None),
        ("", None),
        ("0\n", None),
        ("-1\n", None),
        ("256M\n", None),
    ],
)
def test_a_limit_file_reads_as_bytes_or_no_limit(text: str, limit: int | None) -> None:
    assert parse_memory_limit(text) == limit


def test_the_smallest_limit_on_the_way_to_the_root_binds() -> None:
    assert binding_limit(["max\n", "536870912\n", "268435456\n", V1_UNLIMITED]) == 256 * MiB
    assert binding_limit(["max\n", V1_UNLIMITED]) is None
    assert binding_limit([]) is None


def test_a_connection_at_worst_holds_its_head_body_and_response_buffers() -> None:
    # 1.25 x 64 KiB head + 2 x 64 KiB body + 64 KiB response + 32 KiB of its own.
    assert connection_bytes(Limits()) == 304 * KiB
    smaller = replace(Limits(), request_buffer_bytes=0, response_buffer_bytes=0)
    assert connection_bytes(smaller) == 112 * KiB


def test_the_shipped_limit_fits_hundreds_of_connections_not_ten_thousand() -> None:
    # .section-proxy.yaml: 256 MiB. (192 MiB usable - 24 MiB idle) / 304 KiB.
    assert fitting_connections(256 * MiB, Limits(), 1) == 565
    # Two workers and their supervisor share it: (192 - 2 x 24 - 16) MiB / 2 / 304 KiB.
    assert fitting_connections(256 * MiB, Limits(), 2) == 215


@pytest.mark.parametrize(
    ("limit_mib", "workers"),
    [(64, 1), (128, 1), (128, 2), (256, 1), (256, 2), (256, 3), (512, 8), (4096, 1), (4096, 8)],
)
def test_fitted_connections_at_their_worst_stay_within_the_usable_share(
    workers: int, limit_mib: int
) -> None:
    limits = Limits()
    fits = fitting_connections(limit_mib * MiB, limits, workers)
    idle = workers * PROCESS_BYTES + (SUPERVISOR_BYTES if workers > 1 else 0)
    held = workers * fits * connection_bytes(limits) + idle
    assert held <= USABLE_SHARE * limit_mib * MiB
    # ... and one more connection each would not.
    assert held + workers * connection_bytes(limits) > USABLE_SHARE * limit_mib * MiB


def test_a_limit_too_small_for_the_idle_processes_still_admits_one_connection() -> None:
    assert fitting_connections(16 * MiB, Limits(), 1) == 1


def test_smaller_buffers_fit_more_connections() -> None:
    lean = replace(Limits(), max_header_bytes=16384, request_buffer_bytes=8192)
    assert fitting_connections(256 * MiB, lean, 1) > fitting_connections(256 * MiB, Limits(), 1)


def test_without_a_limit_or_with_room_for_all_nothing_changes() -> None:
    settings = Settings()
    assert fit_settings(settings, limit_bytes=None, workers=1, explicit=False) == (
        settings,
        "",
        False,
    )
    roomy = fit_settings(settings, limit_bytes=64 << 30, workers=1, explicit=False)
    assert roomy == (settings, "", False)


def test_an_unset_max_connections_is_lowered_to_what_fits_and_said_once() -> None:
    fitted, line, warn = fit_settings(Settings(), limit_bytes=256 * MiB, workers=1, explicit=False)
    assert fitted.limits.max_connections == 565
    assert fitted.limits.max_header_bytes == Limits().max_header_bytes  # only the count
    assert not warn
    assert line == (
        "limits.max_connections 565, fitted to the memory limit of 256 MiB "
        "(304 KiB a connection at worst); set it in the configuration to choose another"
    )


def test_workers_are_told_their_share() -> None:
    _, line, _ = fit_settings(Settings(), limit_bytes=256 * MiB, workers=2, explicit=False)
    assert line.startswith("limits.max_connections 215 per worker, fitted to the memory limit")


def test_an_explicit_max_connections_is_kept_with_a_warning_when_it_does_not_fit() -> None:
    settings = Settings()
    kept, line, warn = fit_settings(settings, limit_bytes=256 * MiB, workers=1, explicit=True)
    assert kept == settings
    assert warn
    assert line == (
        "limits.max_connections = 10000 does not fit the memory limit of 256 MiB "
        "(304 KiB a connection at worst; 565 would): an attack can get the process OOM-killed"
    )


def test_an_explicit_max_connections_that_fits_is_kept_silently() -> None:
    settings = replace(Settings(), limits=replace(Limits(), max_connections=500))
    assert fit_settings(settings, limit_bytes=256 * MiB, workers=1, explicit=True) == (
        settings,
        "",
        False,
    )
