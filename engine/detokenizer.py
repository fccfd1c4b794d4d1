"""Turns generated token ids into text as they arrive, and finds stop strings in it.

Decoding one token at a time is wrong for byte-level tokenizers: a character can span
tokens, and spacing can depend on neighbours. So each step decodes a short window
of recent tokens and keeps only the text that the newest tokens added, holding back
anything that ends in an incomplete character.
"""

from dataclasses import dataclass, field

from transformers import PreTrainedTokenizerBase

INCOMPLETE = "\ufffd"  # what a decoder yields for a partial UTF-8 sequence


@dataclass
class IncrementalDetokenizer:
    tokenizer: PreTrainedTokenizerBase
    skip_special_tokens: bool = True
    stop: tuple[str, ...] = ()  # stop strings to look for in the text
    text: str = ""  # the output text so far (cut before a stop string once one is found)
    token_ids: list[int] = field(default_factory=list)  # every generated id
    prefix_offset: int = 0  # window start: tokens before it are fully turned into text
    read_offset: int = 0  # tokens before it are in `text`
    stopped_on: str | None = None  # the stop string that ended generation, if any

    @property
    def stable_text(self) -> str:
        """Text safe to show while streaming: never the start of a stop string that may follow."""
        hold = max((len(s) - 1 for s in self.stop), default=0)
        return (
            self.text if self.stopped_on or not hold else self.text[: max(0, len(self.text) - hold)]
        )

    def add_token(self, token_id: int) -> None:
        self.token_ids.append(token_id)
        if self.stopped_on:
            return
        known = self._decode(self.token_ids[self.prefix_offset : self.read_offset])
        full = self._decode(self.token_ids[self.prefix_offset :])
        if full.endswith(INCOMPLETE) or len(full) <= len(known):
            return  # wait for the rest of the character
        delta = full[len(known) :]
        self.prefix_offset, self.read_offset = self.read_offset, len(self.token_ids)
        self._append(delta)

    def _decode(self, token_ids: list[int]) -> str:
        return str(self.tokenizer.decode(token_ids, skip_special_tokens=self.skip_special_tokens))

    def _append(self, delta: str) -> None:
        # Only the new text and the longest stop string before it can contain a new match.
        search_from = max(0, len(self.text) - max((len(s) for s in self.stop), default=0))
        self.text += delta
        matches = [(self.text.find(s, search_from), s) for s in self.stop]
        found = [(index, s) for index, s in matches if index >= 0]
        if found:
            index, stop = min(found)
            self.text = self.text[:index]
            self.stopped_on = stop
