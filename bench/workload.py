"""The RAG-style workload: 8 passage sets x 8 questions, laid out for prefix sharing.

Passages are real scientific abstracts (BEIR SciFact, read from the shared data folder,
never committed) and the questions are SciFact claims. Each prompt is the chat
template's system turn and the passages, tokenized once per set, followed by the
question tokenized on its own: prompts of one set share an identical token prefix.
"""

import json
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CORPUS_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "beir-scifact"
SYSTEM = "Answer the question using only the numbered passages. Cite passages like [1]."
MARKER = "\x00QUESTION\x00"


@dataclass(frozen=True)
class Workload:
    prompts: list[list[int]]  # token ids, grouped: prompts of one passage set are adjacent
    passage_set_of: list[int]  # which passage set each prompt uses
    shared_prefix_tokens: list[int]  # token count of each set's shared prefix


def load_texts(corpus_dir: Path) -> tuple[list[str], list[str]]:
    corpus, queries = corpus_dir / "corpus.jsonl", corpus_dir / "queries.jsonl"
    if not corpus.is_file() or not queries.is_file():
        raise SystemExit(f"benchmark data not found in {corpus_dir} (pass --corpus-dir)")
    docs = [json.loads(line) for line in corpus.open()]
    claims = [json.loads(line)["text"] for line in queries.open()]
    return [f"{d['title']}. {d['text']}" for d in docs], claims


def build_workload(
    tokenizer, corpus_dir: Path, num_sets: int = 8, per_set: int = 8, passage_tokens: int = 600
) -> Workload:
    docs, claims = load_texts(corpus_dir)
    prompts, set_of, shared = [], [], []
    doc_iter = iter(docs)
    for set_index in range(num_sets):
        passages = _passage_set(tokenizer, doc_iter, passage_tokens)
        prefix_text, suffix_template = _split_template(tokenizer, passages)
        prefix_ids = tokenizer(prefix_text, add_special_tokens=False).input_ids
        shared.append(len(prefix_ids))
        for q in range(per_set):
            claim = claims[set_index * per_set + q]
            suffix = suffix_template.replace(MARKER, f"Question: Is this claim supported? {claim}")
            prompts.append(prefix_ids + tokenizer(suffix, add_special_tokens=False).input_ids)
            set_of.append(set_index)
    return Workload(prompts, set_of, shared)


def _passage_set(tokenizer, doc_iter, passage_tokens: int) -> str:
    """Consecutive abstracts, numbered, until the set holds about `passage_tokens` tokens."""
    parts: list[str] = []
    while len(tokenizer("\n\n".join(parts)).input_ids) < passage_tokens:
        parts.append(f"[{len(parts) + 1}] {next(doc_iter)}")
    text = "\n\n".join(parts)
    ids = tokenizer(text, add_special_tokens=False).input_ids[:passage_tokens]
    return tokenizer.decode(ids)


def _split_template(tokenizer, passages: str) -> tuple[str, str]:
    """The chat prompt around a placeholder question, cut where the question starts."""
    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Passages:\n{passages}\n\n{MARKER}"},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    cut = text.index(MARKER)
    return text[:cut], text[cut:]
