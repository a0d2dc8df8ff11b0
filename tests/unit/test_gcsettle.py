"""The collector settings of the command's serving process (`app/_gcsettle`)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from trioproxy.app import _gcsettle
from trioproxy.app._gcsettle import YOUNG_THRESHOLD, settle_gc


@pytest.fixture
def restored_gc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The test process's collector as it was, whatever the test did to it."""
    monkeypatch.setattr(_gcsettle._Freeze, "made", False)
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_settling_freezes_what_exists_and_raises_only_the_young_threshold(
    restored_gc: None,
) -> None:
    _, middle, old = gc.get_threshold()
    before = Node()
    settle_gc()
    assert gc.get_freeze_count() > 0
    assert not any(o is before for o in gc.get_objects())  # out of every collection's walk
    assert gc.get_threshold() == (YOUNG_THRESHOLD, middle, old)


def test_a_cycle_made_after_settling_is_still_collected(restored_gc: None) -> None:
    settle_gc()
    a, b = Node(), Node()
    a.other, b.other = b, a
    del a, b
    assert gc.collect() >= 2


def test_a_reload_thaws_so_a_frozen_cycle_can_be_freed(restored_gc: None) -> None:
    a, b = Node(), Node()  # as a hook module and its functions: a cycle from startup
    a.other, b.other = b, a
    gone = weakref.ref(a)
    settle_gc()
    del a, b
    gc.collect()
    assert gone() is not None  # frozen: no collection looks at it
    _gcsettle.thaw()
    gc.collect()
    assert gone() is None
    assert gc.get_freeze_count() == 0


def test_thaw_leaves_a_freeze_it_did_not_make(restored_gc: None) -> None:
    gc.freeze()  # an embedding program's own
    frozen = gc.get_freeze_count()
    _gcsettle.thaw()
    assert gc.get_freeze_count() == frozen
