"""`pagedrag generate` streams one answer; `pagedrag run` chats in a terminal, like `ollama run`."""

import argparse
import itertools
import sys
from contextlib import closing
from typing import TYPE_CHECKING, Any

from api.cli.options import add_weight_options, size_argument, weight_options
from api.cli.repl import BYE, ChatSession, stoppable, user_lines
from api.cli.reply import ReplyPrinter
from api.cli.spinner import spinner
from engine.errors import PromptTooLongError
from engine.reasoning import Reasoning, reasoning_for
from engine.sampling_params import SamplingParams

if TYPE_CHECKING:
    from engine.llm import LLM


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
    _add_model_options(chat)
    chat.set_defaults(handler=run_chat)


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", help="library name, HF directory or .gguf (default: the default model)"
    )
    add_weight_options(parser)
    parser.add_argument("--max-tokens", type=int, default=512, help="most tokens to generate")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 is greedy")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=-1)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--hidethinking",
        action="store_true",
        help="a reasoning model's thought is not printed, only its answer",
    )
    parser.add_argument(
        "--kv-cache-memory",
        type=size_argument,
        default=None,
        metavar="BYTES",
        help="KV pool size, e.g. 512M or 2G (default: a fraction of free memory)",
    )


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


def _load(model: str | None, args: argparse.Namespace) -> "LLM":
    with spinner(f"loading {model or 'the default model'}"):
        from engine.llm import LLM  # imported late: `--help` stays quick

        return LLM(model, kv_cache_memory=args.kv_cache_memory, **weight_options(args))


def run_generate(args: argparse.Namespace) -> int:
    params = _params(args)
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    if not prompt.strip():
        raise SystemExit("pagedrag: error: the prompt is empty")
    with _load(args.model, args) as llm:
        _generate(llm, prompt, params, args)
    return 0


def _generate(llm: "LLM", prompt: str, params: SamplingParams, args: argparse.Namespace) -> None:
    if args.raw:
        pieces, reasoning = llm.stream(prompt, params), None
    else:
        token_ids = llm.encode_chat([{"role": "user", "content": prompt}])
        pieces, reasoning = llm.stream(token_ids, params), _reasoning(llm, token_ids)
    printer = ReplyPrinter(reasoning, args.hidethinking)
    with spinner("generating"):
        first = next(pieces, "")
    for piece in itertools.chain([first], pieces):
        printer.add(piece)
    printer.finish()
    print()


def run_chat(args: argparse.Namespace) -> int:
    params = _params(args)
    if args.model_name and args.model and args.model_name != args.model:
        raise SystemExit("pagedrag: error: name the model once: as MODEL or as --model")
    with _load(args.model_name or args.model, args) as llm:
        _chat(llm, params, args)
    return 0


def _chat(llm: "LLM", params: SamplingParams, args: argparse.Namespace) -> None:
    session = ChatSession(llm.model_name, llm.max_model_len, params)
    print(f"Chatting with {llm.model_name}. Type /? for help, {BYE} to leave.", file=sys.stderr)
    told_about_trimming = False
    for line in user_lines(session.command):
        history = session.history
        history.append({"role": "user", "content": line})
        max_prompt_tokens = _max_prompt_tokens(llm, session.params)  # /set may change it
        prompt, dropped = fit_history(llm, session, max_prompt_tokens)
        if dropped and len(prompt) < llm.max_model_len and not told_about_trimming:
            print(
                f"(the conversation outgrew the model's {llm.max_model_len}-token context: "
                "the oldest turns are dropped from now on)",
                file=sys.stderr,
            )
            told_about_trimming = True
        try:
            reply, finished = _stream_reply(llm, prompt, session.params, args.hidethinking)
        except PromptTooLongError as error:
            print(f"pagedrag: error: {error}; send a shorter message", file=sys.stderr)
            history.pop()  # the session goes on, without the message and with all turns kept
            continue
        if not finished:  # stopped with Ctrl-C: the turn is forgotten, as in `ollama run`
            history.pop()
            continue
        del history[:dropped]
        history.append({"role": "assistant", "content": reply})


def fit_history(llm: "LLM", session: ChatSession, max_prompt_tokens: int) -> tuple[list[int], int]:
    """The prompt for the longest tail of the conversation that fits in `max_prompt_tokens`.

    Whole turns (a user message and its reply) are dropped from the front, but never
    the system message nor the last message: if those alone are too long, their prompt
    is returned as it is and the engine refuses it.

    Returns:
        The prompt's token ids, and how many messages were dropped from the front.
    """
    dropped = 0
    prompt = llm.encode_chat(session.messages())
    while len(prompt) > max_prompt_tokens and len(session.history) - dropped > 2:
        dropped += 2
        prompt = llm.encode_chat(session.messages(dropped))
    return prompt, dropped


def _max_prompt_tokens(llm: "LLM", params: SamplingParams) -> int:
    """Prompt tokens that leave room for the reply (up to half the context for it)."""
    room = min(params.max_tokens or 0, llm.max_model_len // 2)
    return llm.max_model_len - 1 - room


def _stream_reply(
    llm: "LLM", prompt: list[int], params: SamplingParams, hide_thinking: bool
) -> tuple[str, bool]:
    """Print the reply as it comes; returns its answer (a reasoning model's thought is
    not kept in the conversation), and False if Ctrl-C stopped it."""
    printer = ReplyPrinter(_reasoning(llm, prompt), hide_thinking)
    stopped = False
    pieces = llm.stream(prompt, params)
    with stoppable() as stop, closing(pieces):  # closing the stream aborts the request
        with spinner("thinking"):
            first = next(pieces, "")
        for piece in itertools.chain([first], pieces):
            if stop.is_set():
                stopped = True
                break
            printer.add(piece)
    printer.finish()
    print("\n")
    return printer.answer, not stopped


def _reasoning(llm: "LLM", prompt: list[int]) -> Reasoning | None:
    # NOTE: the generation prompt is the last few tokens; R1's ends by opening a thought.
    return reasoning_for(llm.tokenizer.chat_template, llm.tokenizer.decode(prompt[-8:]))
