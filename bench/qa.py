"""Answer quality over a real bilingual library: `make bench-qa`.

    python -m bench.qa [--models NAME,NAME] [--embedder NAME] [--quantization int4]
        [--languages en,zh] [--limit N] [--workdir bench/work/qa] [--judge] [--top-k K]
        [--passage-cache off,on] [--passage-recompute-tokens K]

Set-up: the manuals of bench/qa_corpus.py are fetched with `apt-get download` and
ingested once into a library under the work folder (kept for later runs, never
committed). Then every question of bench/qa_set/ is asked through `RAG.ask`, one at a
time, as one user would: answerable questions, out-of-document questions and follow-up
dialogues (their history given). Reported per model and language: retrieval hit@5,
answer accuracy, wrong refusals, made-up answers, follow-up retrieval hit and accuracy,
and the median answer time. Every answer is kept in bench/results/qa_*.json. With
--judge, the model's yes/no verdict on each candidate reranks them first
(rag/passage_judge.py); the stage's prefix-cache hit rate and its time are reported.
With --passage-cache off,on each model answers twice, without and with passage KV reuse
(engine/passage_cache.py), and the report compares the two: accuracy per language, and
how many answers are token for token the same (prefix caching alone is exact, so "off"
is the full recompute).
"""

import argparse
import json
import re
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.engine_throughput import RESULTS_DIR, machine_report
from bench.qa_corpus import corpus_files, fetch
from bench.qa_set import LANGUAGES, Case, holds_evidence, is_right, load_cases
from engine.tokenizer import load_tokenizer
from indexer import Index
from rag import RAG, CitationsEvent, DoneEvent, RAGConfig, TokenEvent
from rag.passage_judge import PassageJudge

DEFAULT_WORKDIR = Path(__file__).resolve().parent / "work" / "qa"
DEFAULT_EMBEDDER = "multilingual-e5-small"  # the library is bilingual


@dataclass
class Outcome:
    """One question's answer, judged."""

    id: str
    kind: str
    language: str
    question: str
    standalone: str
    answer: str
    generated: str  # what the model wrote, before the answer check (empty: not asked)
    found: bool
    right: bool  # holds an accepted answer (answerable and follow-up questions)
    hit: bool  # a passage given to the model holds the evidence
    sources: list[str]  # evidence keys of the passages given, in prompt order
    passages: list[str]  # their texts, so answer checks can be studied without a model
    cited: list[int]
    total_ms: float
    ttft_ms: float | None
    prompt_tokens: int
    cached_tokens: int
    passage_tokens: int = 0  # of cached_tokens, copied from passages cached elsewhere


def build_library(workdir: Path, embedder: str) -> tuple[Path, dict[int, str]]:
    """The ingested library (made once) and each document id's evidence key."""
    root = fetch(workdir)
    files = corpus_files(root)
    data_dir = workdir / f"library-{embedder}"
    with Index(data_dir, embedder) as index:
        report = index.ingest_files(list(files.values()))
        if report.failures:
            raise SystemExit(f"ingest failed: {report.failures}")
    keys = dict(zip(report.document_ids, files, strict=True))
    return data_dir, keys


def ask(rag: RAG, case: Case, keys: dict[int, str]) -> Outcome:
    events = list(rag.ask(case.question, history=list(case.history), stream=True))
    shown, done = events[0], events[-1]
    assert isinstance(shown, CitationsEvent) and isinstance(done, DoneEvent)
    answer = done.answer
    # The passages the model saw (a withdrawn answer carries no citations of its own).
    sources = [keys.get(c.document_id, "?") for c in shown.citations]
    hit = case.evidence is not None and any(
        source == case.evidence.file and holds_evidence(c.text, case)
        for source, c in zip(sources, shown.citations, strict=True)
    )
    return Outcome(
        id=case.id,
        kind=case.kind,
        language=case.language,
        question=case.question,
        standalone=answer.standalone_question,
        answer=answer.answer,
        generated="".join(e.delta for e in events if isinstance(e, TokenEvent)),
        found=answer.found,
        right=answer.found and is_right(answer.answer, case.accepted),
        hit=hit,
        sources=sources,
        passages=[c.text for c in shown.citations],
        cited=answer.cited,
        total_ms=answer.timings.total_ms,
        ttft_ms=answer.timings.ttft_ms,
        prompt_tokens=answer.usage.prompt_tokens,
        cached_tokens=answer.usage.cached_tokens,
        passage_tokens=answer.usage.passage_tokens,
    )


def summarise(outcomes: list[Outcome]) -> dict[str, float | int | None]:
    answerable = [o for o in outcomes if o.kind == "answerable"]
    followups = [o for o in outcomes if o.kind == "followup"]
    outside = [o for o in outcomes if o.kind == "out_of_documents"]
    return {
        "answerable": len(answerable),
        "hit_at_5": _share(o.hit for o in answerable),
        "accuracy": _share(o.right for o in answerable),
        "wrong_refusals": _share(not o.found for o in answerable),
        "out_of_documents": len(outside),
        "made_up": sum(o.found for o in outside),
        "followups": len(followups),
        "followup_hit": _share(o.hit for o in followups),
        "followup_accuracy": _share(o.right for o in followups),
        "median_answer_s": _median([o.total_ms / 1000 for o in outcomes]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="", help="comma-separated; empty: the default")
    parser.add_argument("--embedder", default=DEFAULT_EMBEDDER)
    parser.add_argument("--quantization", default=None, help="none, int8 or int4")
    parser.add_argument("--languages", default=",".join(LANGUAGES))
    parser.add_argument("--limit", type=int, default=0, help="at most N cases of each kind")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument(
        "--judge", action="store_true", help="the model's second-stage verdict on each passage"
    )
    parser.add_argument(
        "--top-k", type=int, default=RAGConfig.top_k, help="passages given to the model"
    )
    parser.add_argument(
        "--passage-cache",
        default="on",
        help="off, on (the engine's default), or off,on to compare the two",
    )
    parser.add_argument("--passage-recompute-tokens", type=int, default=None, metavar="K")
    args = parser.parse_args()
    modes = args.passage_cache.split(",")
    if not modes or set(modes) - {"off", "on"}:
        parser.error("--passage-cache takes off, on or off,on")

    cases = _limited(load_cases(tuple(args.languages.split(","))), args.limit)
    data_dir, keys = build_library(args.workdir, args.embedder)
    report = {
        "machine": machine_report(),
        "embedder": args.embedder,
        "top_k": args.top_k,
        "models": {},
    }
    config = RAGConfig(top_k=args.top_k, judge_passages=args.judge)
    runs = [
        (model, mode)
        for model in (args.models.split(",") if args.models else [None])
        for mode in modes
    ]
    for model, mode in runs:
        options = engine_options(args, mode)
        with RAG(data_dir, model, args.embedder, config=config, **options) as rag:
            name = model or rag.engine.model_path.name
            if len(modes) > 1:
                name += f" (passage cache {mode})"
            outcomes = []
            stamp = time.strftime("%Y%m%d_%H%M%S")
            log = RESULTS_DIR / f"qa_{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}_{stamp}.jsonl"
            RESULTS_DIR.mkdir(parents=True, exist_ok=True)
            with log.open("w", encoding="utf-8") as answers:  # kept as they come: a run can stop
                for case in cases:
                    outcomes.append(ask(rag, case, keys))
                    answers.write(json.dumps(asdict(outcomes[-1]), ensure_ascii=False) + "\n")
                    answers.flush()
                    _progress(outcomes[-1], len(outcomes), len(cases))
            judge = rag.reranker.stats if isinstance(rag.reranker, PassageJudge) else None
        report["models"][name] = {
            "model_path": str(rag.engine.model_path),
            "summary": {lang: summarise(_of(outcomes, lang)) for lang in args.languages.split(",")},
            "judge": None if judge is None else {**asdict(judge), "hit_rate": judge.cache_hit_rate},
            "outcomes": [asdict(o) for o in outcomes],
        }
        _print_table(name, report["models"][name]["summary"])
        if judge is not None:
            print(
                f"judge: {judge.passages} passages, prefix-cache hit {judge.cache_hit_rate:.1%}, "
                f"{judge.seconds / len(outcomes):.2f} s per question"
            )
    if len(modes) > 1:
        report["passage_cache"] = compare_passage_cache(report["models"], args)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"qa_{time.strftime('%Y%m%d_%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    print(f"wrote {path}")


def engine_options(args: argparse.Namespace, mode: str) -> dict:
    options: dict = {"quantization": args.quantization} if args.quantization else {}
    options["enable_passage_cache"] = mode == "on"
    if args.passage_recompute_tokens is not None:
        options["passage_recompute_tokens"] = args.passage_recompute_tokens
    return options


def compare_passage_cache(models: dict, args: argparse.Namespace) -> dict:
    """Each model's answers with passage reuse against those without: accuracy per
    language, identical answers, and how far answers agree token for token."""
    comparison = {}
    for off_name in [name for name in models if name.endswith("(passage cache off)")]:
        base = off_name.removesuffix(" (passage cache off)")
        on = models.get(f"{base} (passage cache on)")
        if on is None:
            continue
        tokenizer = load_tokenizer(Path(on["model_path"]))
        pairs = list(zip(models[off_name]["outcomes"], on["outcomes"], strict=True))
        asked = [(a, b) for a, b in pairs if a["generated"] or b["generated"]]
        prefixes = []
        for a, b in asked:
            want = tokenizer(a["generated"], add_special_tokens=False).input_ids
            got = tokenizer(b["generated"], add_special_tokens=False).input_ids
            equal = next(
                (i for i, (x, y) in enumerate(zip(want, got, strict=False)) if x != y), None
            )
            same = min(len(want), len(got)) if equal is None else equal
            prefixes.append(same / max(len(want), len(got), 1))
        comparison[base] = {
            "accuracy": {
                lang: {
                    "off": models[off_name]["summary"][lang]["accuracy"],
                    "on": on["summary"][lang]["accuracy"],
                }
                for lang in args.languages.split(",")
            },
            "answers_compared": len(asked),
            "identical_answers": sum(a["generated"] == b["generated"] for a, b in asked),
            "mean_equal_token_prefix": sum(prefixes) / len(prefixes) if prefixes else None,
            "passage_tokens_reused": sum(o["passage_tokens"] for o in on["outcomes"]),
            "prompt_tokens": sum(o["prompt_tokens"] for o in on["outcomes"]),
        }
        print(f"passage cache, {base}: {json.dumps(comparison[base])}")
    return comparison


def _limited(cases: list[Case], limit: int) -> list[Case]:
    if not limit:
        return cases
    counts: dict[tuple[str, str], int] = {}
    kept = []
    for case in cases:
        seen = counts.get((case.language, case.kind), 0)
        if seen < limit:
            kept.append(case)
        counts[(case.language, case.kind)] = seen + 1
    return kept


def _of(outcomes: list[Outcome], language: str) -> list[Outcome]:
    return [o for o in outcomes if o.language == language]


def _share(flags) -> float | None:
    values = list(flags)
    return round(sum(values) / len(values), 3) if values else None


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def _progress(outcome: Outcome, done: int, total: int) -> None:
    verdict = "right" if outcome.right else ("refused" if not outcome.found else "answered")
    print(
        f"[{done}/{total}] {outcome.id} {verdict} hit={outcome.hit} "
        f"{outcome.total_ms / 1000:.1f}s: {outcome.answer[:80]!r}",
        flush=True,
    )


def _print_table(name: str, summary: dict[str, dict]) -> None:
    print(f"\n{name}")
    columns = list(next(iter(summary.values())))
    print("| language | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for language, row in summary.items():
        print(f"| {language} | " + " | ".join(str(row[c]) for c in columns) + " |")


if __name__ == "__main__":
    main()
