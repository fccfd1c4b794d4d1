"""Follow-up questions ("and on page 3?") become standalone ones before retrieval.

The model does it, briefly: a short greedy generation over the last few turns. The
retriever then sees a question that makes sense without the conversation.
"""

from dataclasses import dataclass

REWRITE_SYSTEM_PROMPT = (
    "You rewrite the user's last question so that it can be understood without the "
    "conversation before it: replace pronouns and references with what they refer to. "
    "Keep the question's language. Do not answer it. Reply with the rewritten question only."
)
MAX_TURNS = 6  # recent messages the rewrite looks at
MAX_TURN_CHARS = 600  # each message is cut to this many characters


@dataclass(frozen=True, slots=True)
class Turn:
    role: str  # "user" or "assistant"
    content: str


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
    lines = [
        f"{'User' if turn.role == 'user' else 'Assistant'}: {turn.content[:MAX_TURN_CHARS]}"
        for turn in history[-MAX_TURNS:]
    ]
    conversation = "\n".join(lines)
    return [
        {"role": "system", "content": REWRITE_SYSTEM_PROMPT},
        {
            "role": "user",
            "content": f"Conversation:\n{conversation}\n\nLast question: {question}\n\n"
            "Standalone question:",
        },
    ]


def clean_rewrite(generated: str, question: str) -> str:
    """The model's rewrite, or the original question when the rewrite is unusable."""
    line = generated.strip().splitlines()[0].strip() if generated.strip() else ""
    for prefix in ("Standalone question:", "Question:"):
        if line.startswith(prefix):
            line = line[len(prefix) :].strip()
    line = line.strip("\"'“”")
    if not line or len(line) > 3 * len(question) + 200:
        return question
    return line
