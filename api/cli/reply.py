"""A reply printed as it streams: a reasoning model's thought set apart, as `ollama run`
shows it ("Thinking...", the thought, "...done thinking."), then the answer."""

import sys
from dataclasses import dataclass, field

from engine.reasoning import Reasoning, ReasoningStream, split_reply


@dataclass
class ReplyPrinter:
    """Prints a reply's pieces to stdout; `answer` is the reply without its thought."""

    reasoning: Reasoning | None
    hide_thinking: bool = False
    text: str = ""
    _thoughts: ReasoningStream | None = field(init=False, default=None)
    _thinking: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        if self.reasoning is not None:
            self._thoughts = ReasoningStream(self.reasoning)

    def add(self, piece: str) -> None:
        self.text += piece
        if self._thoughts is None:
            _write(piece)
            return
        step = self._thoughts.advance(self.text)
        self._show(step.reasoning, step.content)

    def finish(self) -> None:
        """Print what was held back (a tag that never came) and close an open thought."""
        if self._thoughts is not None:
            step = self._thoughts.advance(self.text, final=True)
            self._show(step.reasoning, step.content)
        if self._thinking:
            _write("\n...done thinking.\n\n")
            self._thinking = False

    @property
    def answer(self) -> str:
        return split_reply(self.text, self.reasoning).content

    def _show(self, thought: str, content: str) -> None:
        if thought and not self.hide_thinking:
            if not self._thinking:
                _write("Thinking...\n")
                self._thinking = True
            _write(thought)
        if content:
            if self._thinking:
                _write("\n...done thinking.\n\n")
                self._thinking = False
            _write(content)


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()
