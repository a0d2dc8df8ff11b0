"""Which hook functions can never wait (so run without a cancel scope), and running one."""

from __future__ import annotations

import inspect
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


def test_run_step_runs_the_coroutine_to_its_end_and_times_the_step() -> None:
    slow: list[tuple[str, str, float]] = []
    watch = BlockingWatch(lambda *step: slow.append(step), threshold_s=0.0)
    ran: list[str] = []
    assert watch.run_step("hook", "rid", returns(ran)) is None
    assert ran == ["ran"]
    assert [step[:2] for step in slow] == [("hook", "rid")]  # every step is "slow" at 0 s
    assert watch._step is None


def test_run_step_refuses_a_coroutine_that_waits_rather_than_run_it_unbounded() -> None:
    watch = BlockingWatch(lambda *step: None)
    coro = awaits(None)
    with pytest.raises(RuntimeError, match="hook h waited"):
        watch.run_step("h", "rid", coro)
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED  # not left suspended
    assert watch._step is None
