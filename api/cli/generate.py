"""`pagedrag generate` streams one answer; `pagedrag run` chats in a terminal, like `ollama run`."""

import argparse
import sys
from typing import Any

from engine.llm import LLM
from engine.sampling_params import SamplingParams

BYE = "/bye"


def add_parsers(subparsers: Any) -> None:
    generate = subparsers.add_parser("generate", help="generate text for one prompt, streamed")
    generate.add_argument("prompt", help="the prompt (use - to read it from standard input)")
    generate.add_argument(
        "--raw", action="store_true", help="send the prompt as is, without the chat template"
    )
    _add_model_options(generate)
    generate.set_defaults(handler=run_generate)

    chat = subparsers.add_parser("run", help="chat with a model in the terminal (/bye to leave)")
    chat.add_argument(
        "model_name", nargs="?", metavar="MODEL", help="library name, directory or .gguf"
    )
    _add_model_options(chat, with_model=False)
    chat.set_defaults(handler=run_chat)


def _add_model_options(parser: argparse.ArgumentParser, with_model: bool = True) -> None:
    if with_model:
        parser.add_argument(
            "--model", help="library name, HF directory or .gguf (default: the default model)"
        )
    parser.add_argument(
        "--dtype", choices=["float32", "bfloat16"], help="default: best for the device"
    )
    parser.add_argument("--max-tokens", type=int, default=512, help="most tokens to generate")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 is greedy")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=-1)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--kv-cache-memory",
        type=_size,
        default=None,
        metavar="BYTES",
        help="KV pool size, e.g. 512M or 2G (default: a fraction of free memory)",
    )


def _size(text: str) -> int:
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    try:
        if text[-1:].upper() in units:
            return int(float(text[:-1]) * units[text[-1].upper()])
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 512M or 2G)") from None


def _params(args: argparse.Namespace) -> SamplingParams:
    try:
        return SamplingParams(
            temperature=args.temperature,
            top_p=args.top_p,
            top_k=args.top_k,
            max_tokens=args.max_tokens,
            seed=args.seed,
        )
    except ValueError as error:
        raise SystemExit(f"pagedrag: error: {error}") from None


def _load(model: str | None, args: argparse.Namespace) -> LLM:
    return LLM(model, dtype=args.dtype, kv_cache_memory=args.kv_cache_memory)


def run_generate(args: argparse.Namespace) -> int:
    params = _params(args)
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    if not prompt.strip():
        raise SystemExit("pagedrag: error: the prompt is empty")
    llm = _load(args.model, args)
    token_ids = llm.encode_chat([{"role": "user", "content": prompt}]) if not args.raw else prompt
    for piece in llm.stream(token_ids, params):
        print(piece, end="", flush=True)
    print()
    return 0


def run_chat(args: argparse.Namespace) -> int:
    params = _params(args)
    llm = _load(args.model_name, args)
    print(f"Chatting with {llm.model_path.name}. Type {BYE} to leave.", file=sys.stderr)
    history: list[dict[str, str]] = []
    while True:
        try:
            line = input(">>> ")
        except EOFError:
            print()
            return 0
        if line.strip() == BYE:
            return 0
        if not line.strip():
            continue
        history.append({"role": "user", "content": line})
        reply = []
        for piece in llm.stream(llm.encode_chat(history), params):
            reply.append(piece)
            print(piece, end="", flush=True)
        print("\n")
        history.append({"role": "assistant", "content": "".join(reply)})
