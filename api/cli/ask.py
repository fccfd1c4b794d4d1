"""`pagedrag ask` and `pagedrag chat`: the documents asked from a shell, answers streamed
with their numbered sources."""

import argparse
import itertools
import sys
from contextlib import closing
from typing import TYPE_CHECKING, Any

from api.cli.options import (
    add_pipeline_options,
    add_tenant_option,
    engine_config,
    library_options,
    tenant_option,
)
from api.cli.repl import BYE, ChatSession, stoppable, user_lines
from api.cli.spinner import spinner

if TYPE_CHECKING:
    from rag import RAG, Answer


def add_parsers(subparsers: Any) -> None:
    ask = subparsers.add_parser("ask", help="ask the documents a question; streams the answer")
    ask.add_argument("question", help="the question (use - to read it from standard input)")
    ask.add_argument("--collection", help="search only this collection")
    ask.add_argument("--top-k", type=int, default=None, help="passages given to the model")
    add_pipeline_options(ask)
    add_tenant_option(ask)
    ask.set_defaults(handler=run_ask)

    chat = subparsers.add_parser("chat", help="a multi-turn conversation over the documents")
    chat.add_argument("--collection", help="search only this collection")
    add_pipeline_options(chat)
    add_tenant_option(chat)
    chat.set_defaults(handler=run_chat)


def _open_rag(args: argparse.Namespace) -> "RAG":
    with spinner("loading the library and the model"):
        from rag import RAG

        library = library_options(args)
        rag = RAG(
            library.data_dir,
            embedder=library.embedder,
            database_url=library.database_url,
            engine_config=engine_config(args),
        )
        rag.engine  # noqa: B018  # the model loads under the spinner, not at the first question
        return rag


def run_ask(args: argparse.Namespace) -> int:
    question = sys.stdin.read() if args.question == "-" else args.question
    with _open_rag(args) as rag:
        _answer(rag, question, _session(rag, args), args)
    return 0


def run_chat(args: argparse.Namespace) -> int:
    with _open_rag(args) as rag:
        session = _session(rag, args)
        print(f"Ask about your documents. Type /? for help, {BYE} to leave.", file=sys.stderr)
        for line in user_lines(session.command):
            reply = _answer(rag, line, session, args)
            if reply is not None:  # None: stopped with Ctrl-C, the turn is forgotten
                session.history += [
                    {"role": "user", "content": line},
                    {"role": "assistant", "content": reply},
                ]
    return 0


def _session(rag: "RAG", args: argparse.Namespace) -> ChatSession:
    """Greedy unless `/set parameter temperature` says otherwise, as every RAG turn is."""
    from engine.sampling_params import SamplingParams

    engine = rag.engine
    params = SamplingParams(temperature=0, max_tokens=args.max_tokens)
    return ChatSession(
        engine.model_name,
        engine.max_model_len,
        params,
        can_set_system=False,
        settable=("temperature", "num_predict", "max_tokens"),  # what a RAG turn takes
    )


def _answer(
    rag: "RAG", question: str, session: ChatSession, args: argparse.Namespace
) -> str | None:
    """Stream one answer to the terminal, then its numbered sources; returns the answer
    (None if Ctrl-C stopped it)."""
    from rag import Answer, DoneEvent, TokenEvent

    options = {
        "collection": args.collection,
        "history": session.history,
        "max_tokens": session.params.max_tokens,
        "temperature": session.params.temperature,
        "tenant": tenant_option(args),
    }
    if getattr(args, "top_k", None):
        options["top_k"] = args.top_k
    streamed = False
    events = rag.ask(question, stream=True, **options)
    assert not isinstance(events, Answer)  # stream=True gives the events
    with stoppable() as stop, closing(events):  # closing the events aborts the generation
        with spinner("searching and reading"):
            first = next(events, None)
        for event in itertools.chain([first] if first else [], events):
            if stop.is_set():
                print("\n")
                return None
            if isinstance(event, TokenEvent):
                print(event.delta, end="", flush=True)
                streamed = True
            elif isinstance(event, DoneEvent):
                answer = event.answer
                if not answer.found:  # after a withdrawn answer, on a line of its own
                    print(("\n\n" if streamed else "") + answer.answer, end="")
                print()
                _print_sources(answer)
                return str(answer.answer)
    raise RuntimeError("the answer stream ended without a final answer")


def _print_sources(answer: "Answer") -> None:
    if not answer.citations:
        return
    print("\nSources:")
    supporting = set(answer.cited) | {a.n for a in answer.attributions}
    for citation in answer.citations:
        mark = "*" if citation.n in supporting else " "
        page = f", p. {citation.page}" if citation.page is not None else ""
        print(f" {mark}[{citation.n}] {citation.title}{page}")
    print()
