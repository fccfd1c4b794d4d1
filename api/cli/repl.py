"""The read loop `pagedrag run` and `pagedrag chat` share, as `ollama run` users know it."""

from collections.abc import Iterator

BYE = "/bye"
PROMPT = ">>> "


def user_lines() -> Iterator[str]:
    """Each non-empty line the user types, until /bye or end of input."""
    while True:
        try:
            line = input(PROMPT)
        except EOFError:
            print()
            return
        if line.strip() == BYE:
            return
        if line.strip():
            yield line
