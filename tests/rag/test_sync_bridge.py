"""The sync face of the one async pipeline: order, errors, early close, inside a loop."""

import asyncio
import threading

import pytest

from rag.sync_bridge import iterate


async def numbers(count: int, fail_at: int | None = None, closed: threading.Event | None = None):
    try:
        for number in range(count):
            if number == fail_at:
                raise ValueError(f"failed at {number}")
            await asyncio.sleep(0)
            yield number
    finally:
        if closed is not None:
            closed.set()


def test_items_come_in_order_and_the_helper_thread_ends() -> None:
    before = threading.active_count()
    assert list(iterate(numbers(5))) == [0, 1, 2, 3, 4]
    assert threading.active_count() == before


def test_an_error_is_raised_after_the_items_before_it() -> None:
    seen = []
    with pytest.raises(ValueError, match="failed at 2"):
        for number in iterate(numbers(5, fail_at=2)):
            seen.append(number)
    assert seen == [0, 1]


def test_an_error_before_any_item_is_raised_every_time() -> None:
    """The helper loop may have ended and closed before the caller cleans up (a race)."""
    for _ in range(200):
        with pytest.raises(ValueError, match="failed at 0"):
            list(iterate(numbers(3, fail_at=0)))


def test_closing_early_closes_the_async_generator() -> None:
    """As the pipeline relies on: its engine stream is aborted when a reader stops."""
    closed = threading.Event()
    items = iterate(numbers(1_000_000, closed=closed))
    assert next(items) == 0
    items.close()
    assert closed.is_set()


def test_it_works_from_inside_a_running_event_loop() -> None:
    """A notebook calls the sync API with its own loop running in the same thread."""

    async def caller() -> list[int]:
        return list(iterate(numbers(3)))

    assert asyncio.run(caller()) == [0, 1, 2]
