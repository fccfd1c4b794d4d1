"""A spinner on the terminal for any wait longer than a second (loading a model, a long
prompt's prefill), as `ollama run` shows one. Only on a terminal: piped output and
error messages stay clean."""

import itertools
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
DELAY_S = 1.0  # shorter waits show nothing
FRAME_S = 0.1


@contextmanager
def spinner(message: str) -> Iterator[None]:
    """Show `message` with a spinner on stderr while the block runs longer than DELAY_S;
    the line is erased when it ends."""
    if not sys.stderr.isatty():
        yield
        return
    done = threading.Event()
    thread = threading.Thread(target=_spin, args=(message, done), daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _spin(message: str, done: threading.Event) -> None:
    if done.wait(DELAY_S):
        return
    for frame in itertools.cycle(FRAMES):
        sys.stderr.write(f"\r{frame} {message}")
        sys.stderr.flush()
        if done.wait(FRAME_S):
            break
    sys.stderr.write("\r\033[K")  # erase the line
    sys.stderr.flush()
