"""Follow-up questions ("and on page 3?") become standalone ones before retrieval.

The model does it, briefly: a short greedy generation over the last few turns, shown a
few worked examples in English and Chinese. A small model's rewrite is often unusable
(it repeats the previous question, drops what is new in the follow-up, changes the
language or rambles); `standalone_question` checks it and then falls back to searching
with the last user turn plus the follow-up, which keeps the conversation's topic and
everything the follow-up asks.
"""

from dataclasses import dataclass

from indexer.text_analysis import analyze
from rag.language import PHRASES, detect_language

REWRITE_SYSTEM_PROMPT = (
    "You rewrite the user's last question so that it can be understood without the "
    "conversation before it: replace pronouns and references with what they refer to, "
    "and keep everything the last question asks. Keep the question's language. Do not "
    "answer it. Reply with the rewritten question only."
)
# Worked examples, (conversation, last question, standalone question), on topics no
# library is likely to hold, so they never leak into a rewrite as facts.
EXAMPLES = (
    (
        (("user", "Which port does the Foobar web server listen on?"), ("assistant", "8080.")),
        "And how do I change it?",
        "How do I change the port the Foobar web server listens on?",
    ),
    (
        (("user", "怎么安装 Quux 打印服务？"), ("assistant", "运行 quux-setup 即可。")),
        "那它的配置文件在哪里？",
        "Quux 打印服务的配置文件在哪里？",
    ),
    (
        (("user", "How do I add a user to the Zed chat server?"), ("assistant", "zedctl add.")),
        "What about removing one together with their messages?",
        "How do I remove a user from the Zed chat server together with their messages?",
    ),
)
MAX_TURNS = 6  # recent messages the rewrite looks at
MAX_TURN_CHARS = 600  # each message is cut to this many characters
MIN_KEPT_SHARE = 0.5  # of the follow-up's terms a usable rewrite still contains
QUESTION_MARKS = ("?", "？")
SAME_QUESTION_SHARE = 0.8  # term overlap (Jaccard) at which two questions are the same one


@dataclass(frozen=True, slots=True)
class Turn:
    role: str  # "user" or "assistant"
    content: str


@dataclass(frozen=True, slots=True)
class Standalone:
    """A follow-up made standalone: what retrieval searches for and what the prompt asks."""

    query: str  # searched for; shown to users as the standalone question
    prompt_question: str  # asked in the answer prompt
    rewritten: bool  # False: the model's rewrite was unusable, this is the fallback


def parse_history(history: list[dict[str, str]] | None) -> list[Turn]:
    """Validated turns of a conversation; a bad shape raises ValueError with what to send."""
    turns = []
    for position, message in enumerate(history or []):
        if not isinstance(message, dict):
            raise ValueError(f"history[{position}] must be an object with role and content")
        role, content = message.get("role"), message.get("content")
        if role not in ("user", "assistant") or not isinstance(content, str):
            raise ValueError(
                f"history[{position}] needs role 'user' or 'assistant' and a string content"
            )
        turns.append(Turn(role, content))
    return turns


def rewrite_messages(history: list[Turn], question: str) -> list[dict[str, str]]:
    """The chat that asks the model for a standalone version of `question`."""
    messages = [{"role": "system", "content": REWRITE_SYSTEM_PROMPT}]
    for conversation, last, standalone in EXAMPLES:
        turns = [Turn(role, content) for role, content in conversation]
        messages.append({"role": "user", "content": _request(turns, last)})
        messages.append({"role": "assistant", "content": standalone})
    messages.append({"role": "user", "content": _request(history[-MAX_TURNS:], question)})
    return messages


def standalone_question(generated: str, question: str, history: list[Turn]) -> Standalone:
    """The model's rewrite when usable, else the last user turn plus the follow-up."""
    rewrite = _first_line(generated)
    if _usable(rewrite, question, history):
        return Standalone(rewrite, rewrite, rewritten=True)
    previous = next((t.content.strip() for t in reversed(history) if t.role == "user"), "")
    if not previous:
        return Standalone(question, question, rewritten=False)
    query = f"{previous[:MAX_TURN_CHARS]} {question}"
    follow_up = PHRASES[detect_language(question)].follow_up
    return Standalone(query, follow_up.format(question=question, previous=previous), False)


def _request(history: list[Turn], question: str) -> str:
    lines = [
        f"{'User' if turn.role == 'user' else 'Assistant'}: {turn.content[:MAX_TURN_CHARS]}"
        for turn in history
    ]
    conversation = "\n".join(lines)
    return f"Conversation:\n{conversation}\n\nLast question: {question}\n\nStandalone question:"


def _first_line(generated: str) -> str:
    line = generated.strip().splitlines()[0].strip() if generated.strip() else ""
    for prefix in ("Standalone question:", "Question:"):
        if line.startswith(prefix):
            line = line[len(prefix) :].strip()
    return line.strip("\"'“”")


def _usable(rewrite: str, question: str, history: list[Turn]) -> bool:
    """Not empty, not rambling, in the question's language, keeps what the follow-up asks,
    brings in something from the conversation (what "it" was), is still a question, and
    is no copy of an earlier question the follow-up differs from."""
    previous = [t.content for t in history if t.role == "user"]
    limit = 2 * (len(question) + max((len(p) for p in previous), default=0)) + 40
    if not rewrite or len(rewrite) > limit:
        return False
    if detect_language(rewrite) is not detect_language(question):
        return False
    if question.rstrip().endswith(QUESTION_MARKS) and not rewrite.endswith(QUESTION_MARKS):
        return False  # an answer ("It ends on April [1].") or an order, not the question
    terms, asked = set(analyze(rewrite)), set(analyze(question))
    if asked and len(terms & asked) < MIN_KEPT_SHARE * len(asked):
        return False
    said = {term for turn in history[-MAX_TURNS:] for term in analyze(turn.content)}
    if not (terms - asked) & said:
        return False  # as vague as the follow-up: "是否会创建主目录？"
    return not any(
        _same(terms, set(analyze(earlier))) and not _same(asked, set(analyze(earlier)))
        for earlier in previous
    )


def _same(a: set[str], b: set[str]) -> bool:
    return bool(a | b) and len(a & b) >= SAME_QUESTION_SHARE * len(a | b)
