"""The read loop `pagedrag run` and `pagedrag chat` share, as `ollama run` users know it.

`/bye`, Ctrl-D or a second Ctrl-C at the prompt leaves; Ctrl-C during an answer stops
the answer and returns to the prompt; a line starting with `/` is a command (`/?` lists
them) and is never sent to the model.
"""

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from common.errors import InvalidInputError
from engine.sampling_params import SamplingParams

BYE = "/bye"
PROMPT = ">>> "
# `/set parameter` names, Ollama's first, and the SamplingParams field each sets.
PARAMETERS = {
    "temperature": ("temperature", float),
    "top_p": ("top_p", float),
    "top_k": ("top_k", int),
    "seed": ("seed", int),
    "num_predict": ("max_tokens", int),
    "max_tokens": ("max_tokens", int),
}
Message = dict[str, str]


@dataclass
class ChatSession:
    """The conversation and the settings the slash commands show and change."""

    model: str
    context_length: int
    params: SamplingParams
    history: list[Message] = field(default_factory=list)
    system: str | None = None
    can_set_system: bool = True  # not over documents: the RAG prompt has its own rules
    settable: tuple[str, ...] = tuple(PARAMETERS)  # what `/set parameter` may change

    def messages(self, dropped: int = 0) -> list[Message]:
        """The conversation as the model reads it, without its first `dropped` messages,
        the system message first."""
        system = [{"role": "system", "content": self.system}] if self.system else []
        return system + self.history[dropped:]

    def command(self, line: str) -> None:
        """Run one `/...` line and print what it did."""
        name, _, rest = line.partition(" ")
        if name in ("/?", "/help"):
            print(self._help())
        elif name == "/clear":
            self.history.clear()
            print("Cleared the conversation.")
        elif name == "/show":
            print(self._show())
        elif name == "/set":
            print(self._set(rest.strip()))
        else:
            print(f"Unknown command {name!r}. Type /? for help.")

    def _help(self) -> str:
        names = ", ".join(name for name in self.settable if name != "max_tokens")
        lines = [
            f"  /set parameter NAME VALUE  {names}",
            "  /set system MESSAGE        a system message for the next turns",
            "  /show                      the model and the settings in use",
            "  /clear                     forget the conversation so far",
            "  /bye                       leave (also Ctrl-D, or Ctrl-C twice)",
            "  /?, /help                  this list",
            "Ctrl-C during an answer stops it.",
        ]
        return "\n".join(line for line in lines if self.can_set_system or "system" not in line)

    def _show(self) -> str:
        p = self.params
        rows = [
            f"  model           {self.model}",
            f"  context length  {self.context_length}",
            f"  temperature     {p.temperature}",
            f"  top_p           {p.top_p}",
            f"  top_k           {p.top_k}",
            f"  seed            {p.seed}",
            f"  num_predict     {p.max_tokens}",
        ]
        if self.system:
            rows.append(f"  system          {self.system}")
        return "\n".join(rows)

    def _set(self, rest: str) -> str:
        what, _, value = rest.partition(" ")
        if what == "system" and self.can_set_system:
            self.system = value.strip() or None
            return "Set the system message." if self.system else "Cleared the system message."
        name, _, raw = value.strip().partition(" ")
        if what != "parameter" or name not in self.settable or not raw.strip():
            return f"Usage: /set parameter NAME VALUE, NAME one of {', '.join(self.settable)}."
        field_name, kind = PARAMETERS[name]
        try:
            self.params = replace(self.params, **{field_name: kind(raw.strip())})
        except (ValueError, InvalidInputError) as error:
            return f"Not set: {error}"
        return f"Set {name} to {raw.strip()}."


def user_lines(command: Callable[[str], None]) -> Iterator[str]:
    """Each line the user types for the model, until they leave; `/...` lines go to
    `command`."""
    # NOTE: a process started in the background of a script inherits SIGINT ignored, and
    # Python then never raises KeyboardInterrupt: this prompt takes Ctrl-C all the same.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    interrupted = False
    while True:
        try:
            line = input(PROMPT)
        except EOFError:
            print()
            return
        except KeyboardInterrupt:
            if interrupted:
                print()
                return
            print("\n(Ctrl-C again, Ctrl-D or /bye to leave)")
            interrupted = True
            continue
        interrupted = False
        text = line.strip()
        if text == BYE:
            return
        if text.startswith("/"):
            try:
                command(text)
            except KeyboardInterrupt:  # while a command printed: as at the prompt
                print("\n(Ctrl-C again, Ctrl-D or /bye to leave)")
                interrupted = True
        elif text:
            yield line


@contextmanager
def stoppable() -> Iterator[threading.Event]:
    """For the block, Ctrl-C sets the event instead of raising: an answer stops between
    two tokens, and the engine is never interrupted in the middle of a step."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)
