"""Passage order and prefix sharing: document order (`canonical_order`) vs rank order.

    python -m bench.prompt_order [--model NAME] [--index-dir DIR]

Retrieves passages (the pipeline's own `RAG.retrieve`: hybrid, top 5) for the 64
questions of `bench.pdf_corpus` over the Debian reference PDF, then builds each prompt
with the real `PromptBuilder` and tokenizer twice: passages in rank order, and in
document order as the pipeline does. For every pair of questions whose passage sets
overlap it measures the common token prefix of the two prompts, and how much of it
the engine can reuse: whole KV blocks only, and never the last prompt token. No model
runs; the figures are deterministic for one index and tokenizer.
"""

import argparse
import itertools
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean

from bench.pdf_corpus import PARAPHRASED, REWORDED, ingested_pdf
from bench.retrieval_metrics import machine, save_result
from engine.config import EngineConfig
from engine.library import resolve_model
from indexer.records import SearchHit
from rag import RAG
from rag.language import detect_language
from rag.prompt import PromptBuilder, canonical_order

ORDERS = ("document", "rank")


@dataclass(frozen=True)
class Question:
    text: str
    group: str  # the section it asks about
    kind: str  # "reworded" or "paraphrased"
    hits: list[SearchHit]  # rank order


def retrieve_all(data_dir: Path) -> list[Question]:
    """Every benchmark question with its passages, as the pipeline retrieves them."""
    questions = []
    with RAG(data_dir) as rag:  # retrieval only: the model is never loaded
        for kind, groups in (("reworded", REWORDED), ("paraphrased", PARAPHRASED)):
            for group, texts in groups.items():
                questions += [Question(q, group, kind, rag.retrieve(q)) for q in texts]
    return questions


def prompts(builder: PromptBuilder, question: Question) -> dict[str, list[int]]:
    language = detect_language(question.text)
    ordered = {"document": canonical_order(question.hits), "rank": question.hits}
    return {o: builder.build(ordered[o], question.text, language).token_ids for o in ORDERS}


def common_prefix(a: list[int], b: list[int]) -> int:
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


def reusable(common: int, prompt_len: int, block_size: int) -> int:
    """Tokens of a prompt the prefix cache serves when `common` leading tokens are cached."""
    return min(common, prompt_len - 1) // block_size * block_size


def shared_passages(a: Question, b: Question) -> int:
    return len({h.chunk_id for h in a.hits} & {h.chunk_id for h in b.hits})


def pair_class(a: Question, b: Question) -> str:
    shared = shared_passages(a, b)
    if shared == len(a.hits) == len(b.hits):
        return "same passage set"
    return f"{shared} of {len(b.hits)} passages shared" if shared else "no passage shared"


def pair_scope(a: Question, b: Question) -> str:
    if a.group != b.group:
        return "different sections"
    return f"same section, {a.kind}" if a.kind == b.kind else "same section, mixed"


def measure(questions: list[Question], builder: PromptBuilder, block_size: int) -> list[dict]:
    built = [prompts(builder, q) for q in questions]
    pairs = []
    for i, j in itertools.combinations(range(len(questions)), 2):
        row = {
            "class": pair_class(questions[i], questions[j]),
            "shared": shared_passages(questions[i], questions[j]),
            "scope": pair_scope(questions[i], questions[j]),
            "prompt_tokens": len(built[j]["document"]),
        }
        for order in ORDERS:
            common = common_prefix(built[i][order], built[j][order])
            row[f"{order}_common"] = common
            row[f"{order}_reused"] = reusable(common, len(built[j][order]), block_size)
        pairs.append(row)
    return pairs


def summarize(pairs: list[dict], key: str) -> list[dict]:
    by: dict[str, list[dict]] = defaultdict(list)
    for pair in pairs:
        by[pair[key]].append(pair)
    rows = []
    for name, group in sorted(by.items(), key=lambda item: -fmean(p["shared"] for p in item[1])):
        row = {
            key: name,
            "pairs": len(group),
            "prompt_tokens": fmean(p["prompt_tokens"] for p in group),
        }
        for order in ORDERS:
            row[f"{order}_common"] = fmean(p[f"{order}_common"] for p in group)
            row[f"{order}_reused"] = fmean(p[f"{order}_reused"] for p in group)
            row[f"{order}_share"] = fmean(p[f"{order}_reused"] / p["prompt_tokens"] for p in group)
        row["document_longer"] = sum(p["document_common"] > p["rank_common"] for p in group)
        row["rank_longer"] = sum(p["document_common"] < p["rank_common"] for p in group)
        rows.append(row)
    return rows


def markdown(rows: list[dict], key: str) -> str:
    lines = [
        f"| {key} | pairs | prompt tokens | common prefix, document / rank "
        "| reusable (whole blocks), document / rank | share of prompt, document / rank "
        "| longer: document / rank |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r[key]} | {r['pairs']} | {r['prompt_tokens']:.0f} | "
            f"{r['document_common']:.0f} / {r['rank_common']:.0f} | "
            f"{r['document_reused']:.0f} / {r['rank_reused']:.0f} | "
            f"{r['document_share']:.1%} / {r['rank_share']:.1%} | "
            f"{r['document_longer']} / {r['rank_longer']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="whose tokenizer (default model)")
    parser.add_argument("--index-dir", type=Path, help="keep (or reuse) the index here")
    args = parser.parse_args()
    from transformers import AutoTokenizer

    builder = PromptBuilder(AutoTokenizer.from_pretrained(resolve_model(args.model)))
    block_size = EngineConfig().block_size
    started = time.perf_counter()
    with ingested_pdf(args.index_dir) as pdf:
        questions = retrieve_all(pdf.data_dir)
    pairs = measure(questions, builder, block_size)
    overlapping = [p for p in pairs if p["class"] != "no passage shared"]
    by_overlap = summarize(pairs, "class")
    by_scope = summarize(overlapping, "scope")
    by_scope += summarize([p | {"scope": "all overlapping pairs"} for p in overlapping], "scope")
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "pdf": pdf.pdf_name,
        "questions": len(questions),
        "block_size": block_size,
        "by_overlap": by_overlap,
        "by_scope": by_scope,
        "seconds": time.perf_counter() - started,
    }
    print(f"{len(questions)} questions, {len(pairs)} pairs, block size {block_size}\n")
    print(markdown(by_overlap, "class") + "\n")
    print(markdown(by_scope, "scope"))
    print(f"\nsaved {save_result('prompt_order', result)}")


if __name__ == "__main__":
    main()
