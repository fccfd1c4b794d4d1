"""A drafted answer from the model's own knowledge, searched for beside the question.

Questions and the passages that answer them often share no words: "which module compares
how fast two snippets run?" against a passage on `timeit`. The model, asked without any
passage, usually names the thing ("use the `timeit` module"), right or wrong; searching
for the question plus that draft (the idea of HyDE, Gao et al. 2022) ranks the passage
that holds the name higher, and the passages, not the draft, still decide the answer. On
`make bench-qa` (English, default model) it put the evidence among the three passages
for 0.899 -> 0.962 of questions (follow-ups: 15 of 18 either way) and raised right
answers 0.797 -> 0.861; Chinese gained nothing, so only English is drafted by default
(`RAGConfig.draft_languages`, docs/benchmarks.md). The draft's words only rank: a
question's named subjects are still looked for as the question states them
(rag/relevance.py).
"""

from rag.language import Language

DRAFT_INSTRUCTIONS = {
    Language.ENGLISH: (
        "Answer the question in one or two short sentences. Name the exact command, "
        "option, module, file or keyword."
    ),
    Language.CHINESE: "用一两句话回答问题，写出确切的命令、选项、模块、文件或关键字。",
}


def draft_messages(question: str, language: Language) -> list[dict[str, str]]:
    """The chat that asks the model for a draft answer, with no passages."""
    return [
        {"role": "system", "content": DRAFT_INSTRUCTIONS[language]},
        {"role": "user", "content": question},
    ]


def search_text(question: str, draft: str) -> str:
    """What the search looks for: the question, then the draft (if there is one)."""
    draft = draft.strip()
    return f"{question}\n{draft}" if draft else question
