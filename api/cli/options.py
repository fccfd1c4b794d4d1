"""Argument types shared by several commands."""

import argparse
from typing import Any

UNITS = {"K": 2**10, "M": 2**20, "G": 2**30}


def size_argument(text: str) -> int:
    """A byte count such as 512M or 2G (argparse type)."""
    try:
        if text[-1:].upper() in UNITS:
            return int(float(text[:-1]) * UNITS[text[-1].upper()])
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 512M or 2G)") from None


def add_weight_options(parser: argparse.ArgumentParser) -> None:
    """How the model's weights are held: --dtype and --quantization (vLLM's names)."""
    parser.add_argument(
        "--dtype", choices=["float32", "bfloat16"], help="default: best for the device"
    )
    parser.add_argument(
        "--quantization",
        choices=["none", "int8", "int4"],
        default="none",
        help="weight-only quantization of the linears, made once and kept in the model store",
    )
    parser.add_argument(
        "--quantization-group-size",
        type=int,
        default=32,
        metavar="N",
        help="int4: input columns sharing one scale, a multiple of 16 (default: 32)",
    )


def weight_options(args: argparse.Namespace) -> dict[str, Any]:
    """The EngineConfig fields `add_weight_options` set."""
    options: dict[str, Any] = {
        "quantization": args.quantization,
        "quantization_group_size": args.quantization_group_size,
    }
    if args.dtype:
        options["dtype"] = args.dtype
    return options
