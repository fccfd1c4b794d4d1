"""Run torch compute off the engine's thread on a thread of its own, which then exits.

GNU OpenMP (torch's CPU runtime) keeps a team of worker threads for every thread that
ever ran a parallel region, for as long as that thread lives. Once the teams together
hold more threads than there are cores, every worker stops spinning between regions and
sleeps, so each of the ~100 parallel regions of a decode step pays a wake-up: a model
loaded on the main thread and stepped on the engine's made single-stream decode about
20% slower on 2 cores (45.6-51.9 against 59.7-63.2 ms a token, 0.5B bf16). A thread
that exits takes its team with it, so the engine's thread keeps the only one that lasts.
"""

import threading
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


def run_on_own_thread(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`fn(*args, **kwargs)` on a new thread, waited for; its result, or what it raised."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(fn(*args, **kwargs))
        except BaseException as error:  # handed to the caller, re-raised there
            failure.append(error)

    thread = threading.Thread(
        target=run, name=f"pagedrag-{getattr(fn, '__name__', 'compute')}", daemon=True
    )
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]
