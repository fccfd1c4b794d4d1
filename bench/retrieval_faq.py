"""FAQ retrieval: real questions against their own answers, in English and in Swedish.

    python -m bench.retrieval_faq [--no-swedish]

The `zaragoza-construction-faq` package (PyPI, CC BY 4.0) holds 503 question/answer
pairs about Swedish construction law, in Swedish and English. Each answer becomes one
document; each question should find its own answer, so Recall@k is "its answer is among
the first k documents". Run 1: English answers, English questions, the default embedder.
Run 2: Swedish answers, Swedish questions, multilingual-e5-small.

The same data checks the relevance threshold: the top-1 dense score of the real
questions is compared with that of off-topic questions (below, with Swedish versions),
to see whether the embedder's `relevance_threshold` separates the two.
"""

import argparse
import tempfile
from dataclasses import dataclass

from bench.retrieval_metrics import first_occurrences, machine, percentile, save_result
from indexer import Index

MODES = ("dense", "bm25", "hybrid")
CUTOFFS = (1, 5, 10)
DEPTH = 20  # chunks asked for; answers are one chunk each, so 10 distinct documents fit

OFF_TOPIC = [  # (English, Swedish)
    ("What is the capital of Mongolia?", "Vad är Mongoliets huvudstad?"),
    ("How do I bake sourdough bread?", "Hur bakar jag surdegsbröd?"),
    ("Who won the football World Cup in 2014?", "Vem vann fotbolls-VM 2014?"),
    ("How many moons does Jupiter have?", "Hur många månar har Jupiter?"),
    ("What is the best way to learn the guitar?", "Hur lär man sig bäst att spela gitarr?"),
    ("How do I train my puppy to sit?", "Hur lär jag min valp att sitta?"),
    ("What causes the northern lights?", "Vad orsakar norrsken?"),
    ("Who wrote Pride and Prejudice?", "Vem skrev Stolthet och fördom?"),
    ("How do I reverse a linked list in Python?", "Hur vänder jag en länkad lista i Python?"),
    (
        "What is the boiling point of water at altitude?",
        "Vid vilken temperatur kokar vatten på hög höjd?",
    ),
    ("Which vitamins are in oranges?", "Vilka vitaminer finns i apelsiner?"),
    ("How long does it take to fly to Tokyo?", "Hur lång tid tar det att flyga till Tokyo?"),
    ("What is the plot of Hamlet?", "Vad handlar Hamlet om?"),
    ("How do vaccines train the immune system?", "Hur tränar vacciner immunförsvaret?"),
    ("What is the offside rule in football?", "Vad är offsideregeln i fotboll?"),
    ("How do I make a good cup of espresso?", "Hur gör jag en god espresso?"),
    ("Why is the sky blue?", "Varför är himlen blå?"),
    ("How many legs does a spider have?", "Hur många ben har en spindel?"),
    (
        "What is the difference between a virus and a bacterium?",
        "Vad är skillnaden mellan virus och bakterier?",
    ),
    ("Who painted the Mona Lisa?", "Vem målade Mona Lisa?"),
    ("How do I knit a scarf?", "Hur stickar jag en halsduk?"),
    ("What is the speed of light?", "Hur snabbt färdas ljuset?"),
    ("Which chess opening is best for beginners?", "Vilken schacköppning är bäst för nybörjare?"),
    ("How do black holes form?", "Hur bildas svarta hål?"),
    ("What should I feed a pet rabbit?", "Vad ska jag ge min kanin att äta?"),
    ("When did the Roman Empire fall?", "När föll Romarriket?"),
    ("How do I lower my cholesterol?", "Hur sänker jag mitt kolesterol?"),
    ("What are the rules of tennis scoring?", "Hur räknar man poäng i tennis?"),
    ("How does photosynthesis work?", "Hur fungerar fotosyntesen?"),
    ("What is a good recipe for pancakes?", "Vad är ett bra recept på pannkakor?"),
]


@dataclass(frozen=True)
class Setting:
    name: str
    language: str  # of both answers and questions: "en" or "sv"
    embedder: str


SETTINGS = (
    Setting("english", "en", "all-minilm-l6-v2"),
    Setting("swedish", "sv", "multilingual-e5-small"),
)


def load_pairs(language: str) -> list[dict]:
    from zaragoza_construction_faq import load

    return load(lang=language)


def recalls(index: Index, pairs: list[dict], ids: list[int], mode: str) -> dict[str, float]:
    """Recall@k: the share of questions whose own answer is among the first k documents."""
    found = {k: 0 for k in CUTOFFS}
    for pair, answer_id in zip(pairs, ids, strict=True):
        hits = index.search(pair["q"], k=DEPTH, mode=mode)
        ranked = first_occurrences(hit.document_id for hit in hits)
        for k in CUTOFFS:
            found[k] += answer_id in ranked[:k]
    return {f"recall@{k}": 100 * found[k] / len(pairs) for k in CUTOFFS}


def top_scores(index: Index, questions: list[str]) -> list[float]:
    return [index.search(q, k=1, mode="dense")[0].score for q in questions]


def score_summary(scores: list[float], threshold: float) -> dict:
    return {
        "p5": percentile(scores, 5),
        "p50": percentile(scores, 50),
        "p95": percentile(scores, 95),
        "share_at_or_above_threshold": share_at_or_above(scores, threshold),
        "scores": scores,
    }


def share_at_or_above(scores: list[float], threshold: float) -> float:
    return 100 * sum(s >= threshold for s in scores) / len(scores)


def best_threshold(real: list[float], off_topic: list[float]) -> dict[str, float]:
    """The cut that maximises (real kept %) + (off-topic rejected %), among observed scores."""
    candidates = sorted(set(real) | set(off_topic))
    best = max(
        candidates,
        key=lambda t: share_at_or_above(real, t) - share_at_or_above(off_topic, t),
    )
    return {
        "threshold": round(best, 3),
        "real_kept": share_at_or_above(real, best),
        "off_topic_kept": share_at_or_above(off_topic, best),
    }


def run_setting(setting: Setting) -> dict:
    pairs = load_pairs(setting.language)
    documents = [{"text": p["a"], "metadata": {"faq_id": p["id"]}} for p in pairs]
    off_topic = [pair[0 if setting.language == "en" else 1] for pair in OFF_TOPIC]
    with (
        tempfile.TemporaryDirectory(prefix="faq-") as data_dir,
        Index(data_dir, setting.embedder) as index,
    ):
        ids = index.ingest_texts(documents)
        threshold = index.relevance_threshold
        real = top_scores(index, [p["q"] for p in pairs])
        unrelated = top_scores(index, off_topic)
        return {
            "embedder": setting.embedder,
            "language": setting.language,
            "pairs": len(pairs),
            "distinct_answers": len(set(ids)),
            "recall": {mode: recalls(index, pairs, ids, mode) for mode in MODES},
            "threshold": threshold,
            "top1_real": score_summary(real, threshold),
            "top1_off_topic": score_summary(unrelated, threshold),
            "best_separating_threshold": best_threshold(real, unrelated),
        }


def markdown(results: dict[str, dict]) -> str:
    lines = ["| setting | mode | R@1 | R@5 | R@10 |", "|---|---|---|---|---|"]
    for name, r in results.items():
        for mode, values in r["recall"].items():
            cells = " | ".join(f"{values[f'recall@{k}']:.1f}" for k in CUTOFFS)
            lines.append(f"| {name} ({r['embedder']}) | {mode} | {cells} |")
    lines += [
        "",
        "| setting | threshold | questions | top-1 p5 | p50 | p95 | % ≥ threshold |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        for kind in ("top1_real", "top1_off_topic"):
            s = r[kind]
            lines.append(
                f"| {name} | {r['threshold']} | {kind.removeprefix('top1_')} | {s['p5']:.3f} "
                f"| {s['p50']:.3f} | {s['p95']:.3f} | {s['share_at_or_above_threshold']:.1f} |"
            )
    lines.append("")
    for name, r in results.items():
        best = r["best_separating_threshold"]
        lines.append(
            f"{name}: best separating threshold {best['threshold']} keeps {best['real_kept']:.1f}% "
            f"of real questions and {best['off_topic_kept']:.1f}% of off-topic ones"
        )
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-swedish", action="store_true", help="skip the e5 / Swedish run")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    started = machine()
    settings = SETTINGS[:1] if args.no_swedish else SETTINGS
    results = {s.name: run_setting(s) for s in settings}
    print(markdown(results))
    path = save_result("retrieval_faq", {"machine": started, "results": results})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
