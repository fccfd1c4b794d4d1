"""Argument types shared by several commands."""

import argparse

UNITS = {"K": 2**10, "M": 2**20, "G": 2**30}


def size_argument(text: str) -> int:
    """A byte count such as 512M or 2G (argparse type)."""
    try:
        if text[-1:].upper() in UNITS:
            return int(float(text[:-1]) * UNITS[text[-1].upper()])
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 512M or 2G)") from None
