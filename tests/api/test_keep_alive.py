"""Ollama's `keep_alive` as requests and `--keep-alive` give it."""

import pytest

from api.server.keep_alive import keep_alive_seconds


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        (300, 300.0),
        (2.5, 2.5),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("1.5s", 1.5),
        ("0", 0.0),
        ("120", 120.0),  # a bare number of seconds, as OLLAMA_KEEP_ALIVE takes it
        (-1, None),  # negative: loaded for ever
        ("-1m", None),
        (float("inf"), None),
    ],
)
def test_durations_in_ollamas_forms(value: float | str, seconds: float | None) -> None:
    assert keep_alive_seconds(value) == seconds


@pytest.mark.parametrize("value", ["soon", "5 minutes", "m5", "", "1d", True, float("nan")])
def test_anything_else_says_what_is_accepted(value: object) -> None:
    with pytest.raises(ValueError, match=r"keep_alive must be a number of seconds or a duration"):
        keep_alive_seconds(value)  # type: ignore[arg-type]
