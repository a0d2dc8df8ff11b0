"""Access-log lines: every field, JSON and LTSV, values always strings, escaping that holds."""

from __future__ import annotations

import json
import time
from datetime import datetime

import pytest

from trioproxy.core._accesslog import (
    ACCESS_LOG_FIELDS,
    FIELD_GETTERS,
    AccessRecord,
    ltsv_escape,
    make_formatter,
    settle_bytes,
)

START = 1_795_000_000.123  # 2026-11-18T11:06:40.123Z; any instant will do


def full_record() -> AccessRecord:
    return AccessRecord(
        start_wall=START,
        peer="10.0.0.9",
        method=b"POST",
        target=b"/api/items?id=7&x=%20",
        http_version=b"1.1",
        host=b"shop.example.com",
        referrer=b"https://shop.example.com/cart",
        user_agent=b"curl/8.5.0",
        x_forwarded_proto=b"https",
        x_forwarded_for=b"203.0.113.7, 10.0.0.9",
        true_client_ip=b"203.0.113.7",
        section_io_id=b"a1b2c3",
        request_id=b"req-42",
        status=201,
        bytes_sent=1234,
        body_bytes_sent=1000,
        bytes_received=512,
        content_type=b"application/json",
        duration_s=0.0456,
        upstream_status=201,
        upstream_addr="10.1.2.3:80",
        upstream_duration_s=0.0401,
        section_io_tag=b"checkout",
        trace_id=b"4bf92f3577b34da6a3ce929d0e0e4736",
        span_id=b"00f067aa0ba902b7",
    )


def local_iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="milliseconds")


EXPECTED_FULL = {
    "time": local_iso(START),
    "time_taken_ms": "46",
    "request": "POST /api/items?id=7&x=%20 HTTP/1.1",
    "method": "POST",
    "path": "/api/items",
    "status": "201",
    "bytes": "1234",
    "response_body_bytes": "1000",
    "request_length": "512",
    "content_type": "application/json",
    "hostname": "shop.example.com",
    "referrer": "https://shop.example.com/cart",
    "useragent": "curl/8.5.0",
    "http_x_forwarded_proto": "https",
    "remote_addr": "203.0.113.7",
    "x_forwarded_for": "203.0.113.7, 10.0.0.9",
    "upstream_status": "201",
    "upstream_addr": "10.1.2.3:80",
    "upstream_time_ms": "40",
    "section_io_id": "a1b2c3",
    "request_id": "req-42",
    "section_io_tag": "checkout",
    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    "span_id": "00f067aa0ba902b7",
}

# A client that went away before anything was parsed or answered: nginx writes "-" for values
# it does not have.
EXPECTED_EMPTY = {
    "time": local_iso(START),
    "time_taken_ms": "0",
    "request": "-",
    "method": "-",
    "path": "-",
    "status": "-",
    "bytes": "0",
    "response_body_bytes": "0",
    "request_length": "0",
    "content_type": "-",
    "hostname": "-",
    "referrer": "-",
    "useragent": "-",
    "http_x_forwarded_proto": "-",
    "remote_addr": "10.0.0.9",
    "x_forwarded_for": "-",
    "upstream_status": "-",
    "upstream_addr": "-",
    "upstream_time_ms": "-",
    "section_io_id": "-",
    "request_id": "-",
    "section_io_tag": "-",
    "trace_id": "-",
    "span_id": "-",
}


def parse_ltsv(line: str) -> dict[str, str]:
    assert "\n" not in line
    pairs = [item.split(":", 1) for item in line.split("\t")]
    return dict(pairs)


# Every field set, and none: each format writes the same values.
FULL_AND_EMPTY = pytest.mark.parametrize(
    ("record", "expected"),
    [(full_record(), EXPECTED_FULL), (AccessRecord(START, "10.0.0.9"), EXPECTED_EMPTY)],
    ids=["full", "empty"],
)


def test_field_table_matches_settings() -> None:
    assert tuple(FIELD_GETTERS) == ACCESS_LOG_FIELDS
    assert set(EXPECTED_FULL) == set(ACCESS_LOG_FIELDS)


@FULL_AND_EMPTY
def test_every_field_json(record: AccessRecord, expected: dict[str, str]) -> None:
    line = make_formatter("json", ACCESS_LOG_FIELDS)(record)
    assert "\n" not in line
    assert line.isascii()
    parsed = json.loads(line)
    assert parsed == expected
    assert list(parsed) == list(ACCESS_LOG_FIELDS)  # in the configured order
    assert all(isinstance(value, str) for value in parsed.values())


@FULL_AND_EMPTY
def test_every_field_ltsv(record: AccessRecord, expected: dict[str, str]) -> None:
    line = make_formatter("ltsv", ACCESS_LOG_FIELDS)(record)
    assert parse_ltsv(line) == expected
    assert [item.split(":", 1)[0] for item in line.split("\t")] == list(ACCESS_LOG_FIELDS)


def test_getters_agree_with_formatters() -> None:
    record = full_record()
    assert {name: get(record) for name, get in FIELD_GETTERS.items()} == EXPECTED_FULL


def test_time_format() -> None:
    value = FIELD_GETTERS["time"](AccessRecord(START, "p"))
    # 2026-11-18T11:06:40.123+00:00: milliseconds and a colon in the offset
    assert len(value) == len("2026-11-18T09:06:40.123+00:00")
    assert value[19] == "." and value[23] in "+-" and value[26] == ":"
    assert datetime.fromisoformat(value).timestamp() == pytest.approx(START, abs=0.001)


def test_time_cache_follows_the_clock() -> None:
    get = FIELD_GETTERS["time"]
    now = time.time()
    for seconds in (now, now + 1.5, now, now + 3600.999):
        assert get(AccessRecord(seconds, "p")) == local_iso(int(seconds * 1000) / 1000)


@pytest.mark.parametrize("fmt", ["json", "ltsv"])
def test_field_selection_and_order(fmt: str) -> None:
    fields = ("status", "time_taken_ms", "hostname")
    line = make_formatter(fmt, fields)(full_record())
    parsed = json.loads(line) if fmt == "json" else parse_ltsv(line)
    assert list(parsed.items()) == [
        ("status", "201"),
        ("time_taken_ms", "46"),
        ("hostname", "shop.example.com"),
    ]


def test_single_field_lines() -> None:
    record = full_record()
    assert make_formatter("json", ("status",))(record) == '{"status":"201"}'
    assert make_formatter("ltsv", ("status",))(record) == "status:201"


def test_large_numbers_stay_strings() -> None:
    # Section's metrics sidecar turns JSON numbers >= 1e6 into "1e+06"; strings survive.
    record = AccessRecord(
        START,
        "p",
        status=200,
        bytes_sent=12_345_678_901,
        body_bytes_sent=10**12,
        duration_s=4000.0,
        upstream_duration_s=3999.5,
    )
    parsed = json.loads(make_formatter("json", ACCESS_LOG_FIELDS)(record))
    assert parsed["bytes"] == "12345678901"
    assert parsed["response_body_bytes"] == "1000000000000"
    assert parsed["time_taken_ms"] == "4000000"
    assert parsed["upstream_time_ms"] == "3999500"
    assert '"bytes":"12345678901"' in make_formatter("json", ("bytes",))(record)


def test_remote_addr_falls_back_to_the_peer() -> None:
    get = FIELD_GETTERS["remote_addr"]
    assert get(AccessRecord(START, "10.0.0.9", true_client_ip=b"198.51.100.1")) == "198.51.100.1"
    assert get(AccessRecord(START, "10.0.0.9")) == "10.0.0.9"
    assert get(AccessRecord(START, "")) == "-"


def test_upstream_time_zero_is_a_time() -> None:
    assert FIELD_GETTERS["upstream_time_ms"](AccessRecord(START, "p", upstream_duration_s=0)) == "0"


# Every byte value a header can carry, and the characters that break lines or fields.
HOSTILE = bytes(range(256)) + b'"\\\t\n\r{}:,'


def hostile_record() -> AccessRecord:
    return AccessRecord(
        START,
        "p",
        method=b"GET",
        target=b"/\xff\x00\n?q=\t",
        user_agent=HOSTILE,
        referrer=b'"},{"injected":"1',
        host=b"caf\xc3\xa9.example",
        x_forwarded_for=b"a\\tb",
    )


def test_json_escaping() -> None:
    line = make_formatter("json", ACCESS_LOG_FIELDS)(hostile_record())
    assert line.isascii()
    assert "\n" not in line and "\r" not in line and "\t" not in line
    parsed = json.loads(line)
    assert list(parsed) == list(ACCESS_LOG_FIELDS)  # no key injected
    assert parsed["useragent"] == HOSTILE.decode("latin-1")
    assert parsed["referrer"] == '"},{"injected":"1'
    assert parsed["path"] == "/\xff\x00\n"
    # Bytes are shown as latin-1 characters, not re-interpreted as UTF-8.
    assert parsed["hostname"] == "caf\xc3\xa9.example"


def test_ltsv_escaping() -> None:
    line = make_formatter("ltsv", ACCESS_LOG_FIELDS)(hostile_record())
    assert line.isascii() and line.isprintable() is False  # TABs separate fields
    assert "\n" not in line and "\r" not in line
    parsed = parse_ltsv(line)
    assert list(parsed) == list(ACCESS_LOG_FIELDS)
    assert parsed["path"] == "/\\xFF\\x00\\n"
    assert parsed["request"] == "GET /\\xFF\\x00\\n?q=\\t HTTP/1.1"
    assert parsed["x_forwarded_for"] == "a\\\\tb"  # a literal backslash-t is not a TAB
    assert parsed["hostname"] == "caf\\xC3\\xA9.example"
    assert unescape_ltsv(parsed["useragent"]) == HOSTILE.decode("latin-1")


def unescape_ltsv(value: str) -> str:
    out, index = [], 0
    while index < len(value):
        char = value[index]
        if char != "\\":
            out.append(char)
            index += 1
        elif value[index + 1] == "x":
            out.append(chr(int(value[index + 2 : index + 4], 16)))
            index += 4
        else:
            out.append({"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}[value[index + 1]])
            index += 2
    return "".join(out)


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("plain text", "plain text"),
        ("", ""),
        ("a\tb", "a\\tb"),
        ("a\nb\rc", "a\\nb\\rc"),
        ("back\\slash", "back\\\\slash"),
        ("\x00\x1f\x7f", "\\x00\\x1F\\x7F"),
        ("\xe9", "\\xE9"),
        ("key:value", "key:value"),
    ],
)
def test_ltsv_escape(value: str, escaped: str) -> None:
    assert ltsv_escape(value) == escaped
    assert unescape_ltsv(escaped) == value


def test_http_10_request_line() -> None:
    record = AccessRecord(START, "p", method=b"GET", target=b"/", http_version=b"1.0")
    assert FIELD_GETTERS["request"](record) == "GET / HTTP/1.0"


@pytest.mark.parametrize(
    ("fmt", "fields"),
    [("xml", ("time",)), ("json", ("nope",)), ("ltsv", ("time", "__import__"))],
)
def test_bad_arguments(fmt: str, fields: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="access-log"):
        make_formatter(fmt, fields)


@pytest.mark.parametrize("fmt", ["json", "ltsv"])
def test_no_fields_means_every_field(fmt: str) -> None:
    record = full_record()
    expected = make_formatter(fmt, ACCESS_LOG_FIELDS)(record)
    assert make_formatter(fmt, ())(record) == expected
    assert make_formatter(fmt)(record) == expected


@pytest.mark.parametrize(
    ("queued", "body_start", "sent_now", "logged"),
    [
        (1000, 200, 1200, 1000),  # all written
        (196_608, 100_250, 131_379, 31_129),  # cut short: what went after the head
        (500, 300, 250, 0),  # the head itself was cut short
        (0, -1, 16, 0),  # no body (or no head) at all
    ],
)
def test_body_bytes_are_those_written_never_more_than_bytes(
    queued: int, body_start: int, sent_now: int, logged: int
) -> None:
    record = AccessRecord(START, "10.0.0.9", body_bytes_sent=queued, body_start=body_start)
    settle_bytes(record, 0, sent_now)
    assert (record.bytes_sent, record.body_bytes_sent) == (sent_now, logged)
    assert record.body_bytes_sent <= record.bytes_sent
