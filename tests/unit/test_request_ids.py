"""Request IDs (`core._headers.new_request_id`): the shape of nginx's $request_id, random,
and drawn from the kernel in batches rather than with a syscall per request."""

from __future__ import annotations

import os
import re
from unittest import mock

from trioproxy.core import _headers
from trioproxy.core._headers import new_request_id


def test_a_request_id_is_32_lowercase_hex_digits() -> None:
    for _ in range(200):
        assert re.fullmatch(rb"[0-9a-f]{32}", new_request_id())


def test_request_ids_do_not_repeat_across_draws() -> None:
    ids = [new_request_id() for _ in range(10 * _headers._IDS_PER_DRAW)]
    assert len(set(ids)) == len(ids)


def test_the_kernel_is_asked_once_per_batch_not_once_per_request() -> None:
    _headers._drawn_ids.clear()
    with mock.patch("os.urandom", wraps=os.urandom) as urandom:
        for _ in range(3 * _headers._IDS_PER_DRAW):
            new_request_id()
    assert urandom.call_count == 3


def test_a_forked_child_hands_out_none_of_its_parents_ids() -> None:
    new_request_id()  # the parent holds IDs drawn ahead
    ahead = set(_headers._drawn_ids)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next IDs, then leave at once
        os.close(read_end)
        os.write(write_end, b"".join(new_request_id() for _ in range(_headers._IDS_PER_DRAW)))
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child = pipe.read()
    os.waitpid(pid, 0)
    child_ids = {child[i : i + 32] for i in range(0, len(child), 32)}
    assert len(child_ids) == _headers._IDS_PER_DRAW
    assert not child_ids & ahead
