"""Structured outputs: a request's text kept to JSON (any object, or what a JSON Schema
allows) by masking, at every step, each token the grammar cannot take next.

xgrammar compiles the grammar against the tokenizer's vocabulary (the compiler is made
once per engine, on the first such request) and a matcher per request follows the
tokens it samples. A step pays one bitmask fill per constrained row; rows without a
grammar pay nothing (bench.structured_outputs measures it).
"""

import json
import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from common.errors import InvalidInputError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase
    from xgrammar import CompiledGrammar, Grammar, GrammarCompiler, GrammarMatcher

ANY_OBJECT = '{"type": "object"}'
GRAMMAR_CACHE_BYTES = 64 << 20  # compiled grammars kept; many distinct schemas evict the oldest
# "[04:52:58] /project/cpp/json_schema_converter.cc:5082: " before xgrammar's reason
XGRAMMAR_PREFIX = re.compile(r"^\[[^\]]*\]\s*\S+:\d+:\s*")


@dataclass(frozen=True)
class StructuredOutputs:
    """As vLLM's: `json` (a JSON Schema, as text or a dict) or `json_object=True` (any
    JSON object). The output is compact JSON: no whitespace a small model could loop on.
    `prefix` and `suffix` are literal text around it (a forced tool call's tags)."""

    json: str | dict[str, Any] | None = None
    json_object: bool = False
    prefix: str = ""
    suffix: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.json, dict):
            object.__setattr__(self, "json", json.dumps(self.json))
        if (self.json is not None) == self.json_object:
            raise InvalidInputError("structured outputs: give a JSON schema or json_object")

    @property
    def schema(self) -> str:
        return str(self.json) if self.json is not None else ANY_OBJECT


class Grammars:
    """The engine's grammar compiler, and the masking of a step's constrained rows."""

    def __init__(
        self, tokenizer: "PreTrainedTokenizerBase", vocab_size: int, stop_token_ids: list[int]
    ) -> None:
        self._tokenizer = tokenizer
        self._vocab_size = vocab_size
        self._stop_token_ids = stop_token_ids
        self._compiler: GrammarCompiler | None = None
        self._lock = threading.Lock()  # the compiler is made once, whichever thread asks

    def compile(self, spec: StructuredOutputs) -> "CompiledGrammar":
        """The grammar of a spec (cached by the compiler); a schema xgrammar cannot use
        is a clear error. Safe from any thread."""
        import xgrammar  # imported on first use: most requests never need it

        with self._lock:
            if self._compiler is None:
                info = xgrammar.TokenizerInfo.from_huggingface(
                    self._tokenizer,
                    vocab_size=self._vocab_size,
                    stop_token_ids=self._stop_token_ids,
                )
                self._compiler = xgrammar.GrammarCompiler(
                    info, max_threads=2, cache_limit_bytes=GRAMMAR_CACHE_BYTES
                )
        try:
            if not spec.prefix and not spec.suffix:
                return self._compiler.compile_json_schema(spec.schema, any_whitespace=False)
            body = xgrammar.Grammar.from_json_schema(spec.schema, any_whitespace=False)
            parts = [*_literal(spec.prefix), body, *_literal(spec.suffix)]
            return self._compiler.compile_grammar(xgrammar.Grammar.concat(*parts))
        except (RuntimeError, ValueError) as error:
            reason = XGRAMMAR_PREFIX.sub("", str(error)).strip()
            raise InvalidInputError(f"the JSON schema cannot be used: {reason}") from None

    def matcher(self, spec: StructuredOutputs) -> "GrammarMatcher":
        """A fresh matcher for one request."""
        import xgrammar

        return xgrammar.GrammarMatcher(self.compile(spec))

    def mask(self, logits: "torch.Tensor", matchers: list["GrammarMatcher | None"]) -> None:
        """Set to -inf, in place, the logits of tokens each row's grammar forbids next."""
        rows = [row for row, matcher in enumerate(matchers) if matcher is not None]
        if not rows:
            return
        import xgrammar

        bitmask = xgrammar.allocate_token_bitmask(len(matchers), self._vocab_size)
        for row in rows:
            matcher = matchers[row]
            assert matcher is not None
            matcher.fill_next_token_bitmask(bitmask, row)
        xgrammar.apply_token_bitmask_inplace(
            logits, bitmask.to(logits.device), vocab_size=self._vocab_size, indices=rows
        )


def _literal(text: str) -> list["Grammar"]:
    """A grammar of exactly `text` (JSON's string escapes are EBNF's too); none for ""."""
    import xgrammar

    if not text:
        return []
    return [xgrammar.Grammar.from_ebnf(f"root ::= {json.dumps(text, ensure_ascii=False)}")]
