"""Which hook functions can never wait (so run without a cancel scope), and running one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import pytest
import trio

from trioproxy.hooks._watch import BlockingWatch, cannot_wait


async def returns(exchange: Any) -> None:
    exchange.append("ran")


async def awaits(exchange: Any) -> None:
    await trio.lowlevel.checkpoint()


async def awaits_only_sometimes(exchange: Any) -> None:
    if exchange:
        await trio.lowlevel.checkpoint()


class _Manager:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


async def uses_async_with(exchange: Any) -> None:
    async with _Manager():
        pass


async def _numbers() -> AsyncIterator[int]:
    yield 1


async def uses_async_for(exchange: Any) -> None:
    async for _ in _numbers():
        pass


def sync(exchange: Any) -> None:
    return None


class Hook:
    async def request(self, exchange: Any) -> None:
        return None

    async def response(self, exchange: Any, head: Any) -> None:
        await trio.lowlevel.checkpoint()


class CallableHook:
    async def __call__(self, exchange: Any) -> None:
        return None


def test_an_async_def_without_await_cannot_wait() -> None:
    assert cannot_wait(returns)
    assert cannot_wait(Hook().request)


@pytest.mark.parametrize(
    "function",
    [
        awaits,
        awaits_only_sometimes,
        uses_async_with,
        uses_async_for,
        Hook().response,
        sync,
        _numbers,
        partial(returns),
        CallableHook(),
    ],
)
def test_anything_that_may_wait_or_is_not_a_plain_async_def_is_assumed_to_wait(
    function: Any,
) -> None:
    assert not cannot_wait(function)


def test_a_step_noted_and_ended_is_timed_and_counted_when_slow() -> None:
    slow: list[tuple[object, ...]] = []
    watch = BlockingWatch(lambda *step: slow.append(step), threshold_s=0.0)
    step = watch.step("hook", b"rid")
    assert watch._step is step  # what the watchdog thread looks at while the step runs
    took = watch.ended(step)
    assert took >= 0.0 and watch._step is None
    assert [found[:2] for found in slow] == [("hook", b"rid")]  # every step is slow at 0 s


def test_a_quick_step_is_not_counted() -> None:
    slow: list[tuple[object, ...]] = []
    watch = BlockingWatch(lambda *step: slow.append(step), threshold_s=10.0)
    watch.ended(watch.step("hook", b"rid"))
    assert slow == [] and watch._step is None
