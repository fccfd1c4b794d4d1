"""The RAG-style workload: 8 passage sets x 8 questions, laid out for prefix sharing.

Passages and questions are real text from one of two sources:

- BEIR SciFact (scientific abstracts; the questions are SciFact claims), read from the
  shared data folder when it is there, never committed;
- otherwise the `zaragoza-construction-faq` package (the `bench` extra, from PyPI):
  503 questions and answers about Swedish construction law, in English. Answers are
  the passages, and each set's questions are those its own answers reply to.

Each prompt is the chat template's system turn and the passages, tokenized once per
set, followed by the question tokenized on its own: prompts of one set share an
identical token prefix.
"""

import json
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CORPUS_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "beir-scifact"
SYSTEM = "Answer the question using only the numbered passages. Cite passages like [1]."
MARKER = "\x00QUESTION\x00"
SOURCES = ("auto", "scifact", "faq")


@dataclass(frozen=True)
class TextSource:
    """Real passages and questions to build prompts from."""

    name: str  # what the report says the run used
    passages: list[str]
    questions: list[str]
    question_prefix: str  # put before each question in the prompt
    paired: bool  # questions[i] is answered by passages[i]: a set asks about its own passages


@dataclass(frozen=True)
class Workload:
    prompts: list[list[int]]  # token ids, grouped: prompts of one passage set are adjacent
    passage_set_of: list[int]  # which passage set each prompt uses
    shared_prefix_tokens: list[int]  # token count of each set's shared prefix
    source: str  # the text source's name


def load_source(corpus_dir: Path = DEFAULT_CORPUS_DIR, source: str = "auto") -> TextSource:
    """SciFact from `corpus_dir` if asked for or found there; else the FAQ package."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    has_scifact = all((corpus_dir / name).is_file() for name in ("corpus.jsonl", "queries.jsonl"))
    if source == "scifact" or (source == "auto" and has_scifact):
        if not has_scifact:
            raise SystemExit(f"BEIR SciFact not found in {corpus_dir} (pass --corpus-dir)")
        return load_scifact(corpus_dir)
    return load_faq()


def load_scifact(corpus_dir: Path) -> TextSource:
    with (corpus_dir / "corpus.jsonl").open() as corpus:
        docs = [json.loads(line) for line in corpus]
    with (corpus_dir / "queries.jsonl").open() as queries:
        claims = [json.loads(line)["text"] for line in queries]
    passages = [f"{d['title']}. {d['text']}" for d in docs]
    return TextSource(
        f"BEIR SciFact ({corpus_dir})", passages, claims, "Is this claim supported? ", False
    )


def load_faq() -> TextSource:
    try:
        from zaragoza_construction_faq import load
    except ImportError:
        raise SystemExit(
            "no benchmark text: BEIR SciFact is not in the shared data folder and the "
            "`bench` extra is not installed; run `make bench-engine`, or "
            "pip install torch==2.13.0 -e '.[bench]'"
        ) from None
    pairs = load(lang="en")
    return TextSource(
        "zaragoza-construction-faq (English answers and questions)",
        [pair["a"] for pair in pairs],
        [pair["q"] for pair in pairs],
        "",
        True,
    )


def build_workload(
    tokenizer, source: TextSource, num_sets: int = 8, per_set: int = 8, passage_tokens: int = 600
) -> Workload:
    prompts, set_of, shared = [], [], []
    first = 0  # index of the set's first passage
    for set_index in range(num_sets):
        passages, used = _passage_set(tokenizer, source.passages[first:], passage_tokens)
        prefix_text, suffix_template = _split_template(tokenizer, passages)
        prefix_ids = tokenizer(prefix_text, add_special_tokens=False).input_ids
        shared.append(len(prefix_ids))
        start = first if source.paired else set_index * per_set
        for question in source.questions[start : start + per_set]:
            text = f"Question: {source.question_prefix}{question}"
            suffix = suffix_template.replace(MARKER, text)
            prompts.append(prefix_ids + tokenizer(suffix, add_special_tokens=False).input_ids)
            set_of.append(set_index)
        first += used
    return Workload(prompts, set_of, shared, source.name)


def _passage_set(tokenizer, texts: list[str], passage_tokens: int) -> tuple[str, int]:
    """Consecutive texts, numbered, until the set holds about `passage_tokens` tokens.

    Returns:
        The set cut at `passage_tokens` tokens, and how many texts it drew on.
    """
    parts: list[str] = []
    while len(tokenizer("\n\n".join(parts)).input_ids) < passage_tokens:
        if len(parts) == len(texts):
            raise SystemExit("the benchmark text source ran out of passages")
        parts.append(f"[{len(parts) + 1}] {texts[len(parts)]}")
    text = "\n\n".join(parts)
    ids = tokenizer(text, add_special_tokens=False).input_ids[:passage_tokens]
    return tokenizer.decode(ids), len(parts)


def _split_template(tokenizer, passages: str) -> tuple[str, str]:
    """The chat prompt around a placeholder question, cut where the question starts."""
    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Passages:\n{passages}\n\n{MARKER}"},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    cut = text.index(MARKER)
    return text[:cut], text[cut:]
