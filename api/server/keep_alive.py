"""Ollama's `keep_alive`: how long a model stays loaded after its last request.

A number is seconds; a string is a Go duration (`"5m"`, `"1h30m"`, `"500ms"`) or a bare
number of seconds (as `OLLAMA_KEEP_ALIVE` takes it); 0 unloads the model once the request
is done, and anything negative keeps it loaded (`None` here).
"""

import math
import re

UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION = re.compile(rf"[+-]?(?:{_PART.pattern})+")


def keep_alive_seconds(value: float | int | str) -> float | None:
    """Seconds to keep a model loaded once idle; None: for ever. Raises ValueError with
    the accepted forms when `value` is none of them."""
    if isinstance(value, bool):  # a JSON true is no duration, though Python calls it 1
        raise ValueError(_message(value))
    seconds = float(value) if isinstance(value, int | float) else _parse(value.strip())
    if math.isnan(seconds):
        raise ValueError(_message(value))
    return None if seconds < 0 or math.isinf(seconds) else seconds


def _parse(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    if not _DURATION.fullmatch(text):
        raise ValueError(_message(text))
    seconds = sum(float(number) * UNITS[unit] for number, unit in _PART.findall(text))
    return -seconds if text.startswith("-") else seconds


def _message(value: object) -> str:
    return (
        f'keep_alive must be a number of seconds or a duration such as "5m" or '
        f'"1h30m" (0 unloads, negative keeps loaded), not {value!r}'
    )
