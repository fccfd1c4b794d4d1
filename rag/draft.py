"""A drafted answer from the model's own knowledge, searched for beside the question.

Questions and the passages that answer them often share no words: "which module compares
how fast two snippets run?" against a passage on `timeit`. The model, asked without any
passage, usually names the thing ("use the `timeit` module"), right or wrong; searching
for the question plus that draft (the idea of HyDE, Gao et al. 2022) ranks the passage
that holds the name higher, and the passages, not the draft, still decide the answer. On
`make bench-qa` (English, default model) it put the evidence among the three passages
for 0.899 -> 0.949 of questions and 15 -> 17 of 18 follow-ups, and raised right
answers 0.797 -> 0.848; Chinese gained nothing, so only English is drafted by default
(`RAGConfig.draft_languages`, docs/benchmarks.md). The draft's words only rank: a
question's named subjects are still looked for as the question states them, and a
wrong draft never lowers a passage's score (rag/relevance.py).
"""

from rag.language import Language

DRAFT_INSTRUCTIONS = {
    # Name first: asked for sentences, the model spent its 32 tokens restating the
    # question and named nothing ("The module that keeps it sorted as you insert items is").
    Language.ENGLISH: (
        "Answer the question in a few words: first the exact name of the command, option, "
        "function, module, file or keyword, then why."
    ),
    Language.CHINESE: (
        "用几个词回答问题：先写出确切的命令、选项、函数、模块、文件或关键字的名字，再说明原因。"
    ),
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
