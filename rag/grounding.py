"""Is the answer in the passages? Checked after generation, before the user relies on it.

A small model answers from its own memory when the passages miss ("the capital of
Australia is New South Wales [1]"). Each sentence of the answer is compared with the
passages by the retriever's own terms (stemmed words, Chinese bigrams), leaving out the
question's terms, which prove nothing: a sentence is supported when one passage holds
enough of what it adds. The answer stands only if its supported sentences carry most of
what it says, and an answer that only repeats the question ("Australia" to "What is the
capital of Australia?") answers nothing; otherwise it becomes the "not found" reply. A
refusal in the model's own words is a "not found" too, so every client sees one flag and
one phrase for it. A marker [n] stays only on a sentence that passage n supports.

Code is held to a stricter standard: a command or snippet (in backticks, a fenced
block, or a shell or SQL line of its own) whose terms the passages mostly lack is the
model's own, however well its prose around it echoes the question ("CREATE INDEX
idx_city ON weather (city)" answering a question about indexes from a tutorial that
has none), so the answer is withdrawn. Operators, paths, options and keywords, which
the terms miss, are compared literally (rag/literals.py).
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass

from indexer.text_analysis import analyze
from rag.answer import Citation
from rag.attribution import sentence_spans
from rag.injection import without_orders
from rag.language import Language
from rag.literals import holds, literal_facts
from rag.prompt import CITATION_MARKER, cited_numbers

# Calibrated with `make bench-qa` (docs/benchmarks.md): right answers against answers to
# questions the library cannot answer.
SENTENCE_SUPPORT = {Language.ENGLISH: 0.5, Language.CHINESE: 0.4}  # of a sentence's new terms
ANSWER_SUPPORT = 0.5  # of the answer's new terms, in sentences a passage supports
# Of the question's own terms (less the generic ones), in the window that holds the
# fact: a command named in a passage answers only what that passage says of it
# ("edquota" changes quotas; asked which command prints a quota report, the passage's
# window about it holds 19% of the question's bigrams). The same share for both
# languages, calibrated with `make bench-qa` (docs/benchmarks.md).
TOPIC_SHARE = 0.2
WINDOW_TERMS = 60  # a passage is searched in windows of this many terms ...
WINDOW_STRIDE = 30  # ... starting this many terms apart
# Words any answer uses, whatever its facts: they prove nothing either way.
_GENERIC_TEXT = """
about above after again all also always am another any anything because been before being
below between both can cannot could did do does doing done down during each either else even
ever every example few first following further get gets give given go going good had having
he her here him his however i instead just know least less let like made make makes many may
me might more most much must my need needs never no nor not now often once one only other
others otherwise our out over own per please possible provide provided rather really same see
several shall she should show since so some something specific still such sure take tell than
thank then thing things those though code through thus too two under unless until up upon us use
used uses using usually various very via want way we well whatever whether while whose within
without would yes yet you your answer command commands document documents passage passages
question information text mention mentioned state stated say says said refer refers based
according
可以 使用 如果 这个 一个 我们 您可 需要 什么 如何 怎么 因为 所以 但是 或者 以及 通过 进行 可能
其中 这些 那些 时候 就是 没有 已经 还是 根据 文档 段落 回答 问题 提供 信息 内容
"""
GENERIC = frozenset(analyze(_GENERIC_TEXT))
REFUSALS = re.compile(
    r"(?:documents?|passages?|context|provided (?:text|information))\b[^.!?\n]{0,40}?"
    r"\b(?:do(?:es)?\s*n[o']t|don't|doesn't)\s+(?:contain|mention|include|say|provide|cover)"
    r"|\bnot (?:found|mentioned|covered|provided) in (?:the|your) (?:documents?|passages?)"
    r"|\b(?:I (?:could|can)\s*(?:not|n't) find|no information (?:about|on))"
    r"|(?:文档|段落|资料)[^。！？\n]{0,20}?(?:没有|未|不)(?:包含|提到|提及|涉及|找到)"
    r"|没有找到|无法(?:回答|找到)",
    re.IGNORECASE,
)
# Fenced blocks (closed or cut off by the token limit) and inline code.
CODE_SPAN = re.compile(r"```[^\n]*\n(?P<block>.*?)(?:```|\Z)|`(?P<inline>[^`\n]+)`", re.DOTALL)
# Code the model wrote without backticks: a shell line ("$ dropdb mydb") or an SQL
# statement ("CREATE INDEX city_index ON weather (city);") on a line of its own.
CODE_LINE = re.compile(
    r"^[ \t]*(?:\$[ \t]+(?P<shell>\S[^\n]*)|(?P<statement>[A-Z]{2,}\b[^\n]*;))[ \t]*$", re.MULTILINE
)
# Of a code span's terms, the share the passages must hold. Calibrated with `make bench-qa`:
# made-up SQL held 3 of 5; a right answer's ten-line example missed 3 of about 20.
CODE_SUPPORT = 0.8
_SPACED_MARKER = re.compile(r"(?P<space>\s*)\[(?P<numbers>\d+(?:\s*[,，]\s*\d+)*)\]")


@dataclass(frozen=True, slots=True)
class Grounding:
    supported: bool  # False: the answer must become the "not found" reply
    text: str  # the answer, without the markers no passage supports
    cited: list[int]  # the [n] left in `text`, in order of first mention


def ground(
    answer: str, question: str, citations: Sequence[Citation], language: Language
) -> Grounding:
    """Whether the passages support `answer`, and its markers that they support."""
    if not answer.strip() or REFUSALS.search(answer):
        return Grounding(False, answer, [])
    # The passages as the model read them, each under its title (the prompt shows it:
    # "Python 3.11.2" in an answer comes from a page titled so); an order planted in
    # one supports nothing.
    cleaned = {c.n: without_orders(c.text) for c in citations}
    texts = {c.n: f"{c.title}\n{cleaned[c.n]}" for c in citations}
    windows = {c.n: _windows(cleaned[c.n], c.title) for c in citations}
    if not _code_supported(answer, windows):
        return Grounding(False, answer, [])
    asked = set(analyze(question))
    topic = asked - GENERIC
    needed = SENTENCE_SUPPORT[language]
    said = supported = 0
    kept_text = []
    last = 0
    for start, end in sentence_spans(answer):
        sentence = answer[start:end]
        new = set(analyze(CITATION_MARKER.sub(" ", sentence))) - asked - GENERIC
        literals = literal_facts(sentence, question)
        shares = {n: _share(new, literals, topic, windows[n], text) for n, text in texts.items()}
        weight = len(new) + len(literals)
        said += weight
        if weight and max(shares.values(), default=0.0) >= needed:
            supported += weight
        kept_text.append(answer[last:start])
        kept_text.append(_keep_markers(sentence, shares, needed))
        last = end
    kept_text.append(answer[last:])
    text = "".join(kept_text)
    grounded = said > 0 and supported >= ANSWER_SUPPORT * said  # an echo answers nothing
    return Grounding(grounded, text, cited_numbers(text, len(citations)))


def _code_supported(answer: str, windows: dict[int, list[set[str]]]) -> bool:
    """Whether the passages (their term windows, which cover every term) hold most of
    the terms of every code span in the answer."""
    spans = [m.group("block") or m.group("inline") for m in CODE_SPAN.finditer(answer)]
    spans += [m.group("shell") or m.group("statement") for m in CODE_LINE.finditer(answer)]
    if not spans:
        return True
    known = {term for passage in windows.values() for window in passage for term in window}
    for span in spans:
        terms = set(analyze(span))
        if terms and len(terms & known) < CODE_SUPPORT * len(terms):
            return False
    return True


def _share(
    new: set[str],
    literals: set[str],
    topic: set[str],
    windows: list[set[str]],
    passage: str,
) -> float:
    """How well one passage supports a sentence: by its terms or by its literals, the
    better of the two (an operator's sentence may add no term at all)."""
    by_literals = _literal_support(literals, passage)
    if literals and not new:
        return by_literals
    return max(_support(new, topic, windows), by_literals)


def _literal_support(literals: set[str], passage: str) -> float:
    """The share of the sentence's literals the passage holds (0 when it has none)."""
    if not literals:
        return 0.0
    return sum(holds(passage, literal) for literal in literals) / len(literals)


def _windows(passage: str, title: str = "") -> list[set[str]]:
    """The passage's terms in overlapping windows: a fact and its subject lie close. The
    title's terms belong to every window: it says what the whole passage is about."""
    terms, titled = analyze(passage), set(analyze(title))
    starts = range(0, max(1, len(terms) - WINDOW_TERMS + WINDOW_STRIDE), WINDOW_STRIDE)
    return [set(terms[start : start + WINDOW_TERMS]) | titled for start in starts]


def _support(new: set[str], topic: set[str], windows: list[set[str]]) -> float:
    """The largest share of `new` that one window holds beside a term of the question's
    topic ("Madison" from a table of cities does not answer "the capital of Australia")."""
    if not new:
        return 1.0
    return max(
        (
            len(new & window) / len(new)
            for window in windows
            if len(topic & window) >= TOPIC_SHARE * len(topic)
        ),
        default=0.0,
    )


def _keep_markers(sentence: str, shares: dict[int, float], needed: float) -> str:
    """The sentence without the [n] whose passage does not support it."""

    def keep(match: re.Match[str]) -> str:
        numbers = [part.strip() for part in re.split(r"[,，]", match.group("numbers"))]
        good = [p for p in numbers if shares.get(int(p), 0.0) >= needed]
        return f"{match.group('space')}[{', '.join(good)}]" if good else ""

    return _SPACED_MARKER.sub(keep, sentence)
