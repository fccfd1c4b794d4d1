"""Read a BEIR-format dataset: corpus.jsonl, queries.jsonl and a test qrels file.

BEIR directories come in two layouts (`qrels/test.tsv`, or a flat `qrels-test.tsv`);
both are accepted so that the shared copy and an upstream download read alike.
"""

import csv
import json
from dataclasses import dataclass
from pathlib import Path

QRELS_NAMES = ("qrels/test.tsv", "qrels-test.tsv")


@dataclass(frozen=True)
class BeirDocument:
    doc_id: str
    title: str
    text: str


@dataclass(frozen=True)
class BeirDataset:
    corpus: list[BeirDocument]
    queries: dict[str, str]  # query id -> text, only the queries that have judgements
    qrels: dict[str, dict[str, int]]  # query id -> {doc id: graded relevance}


def load_beir(directory: Path) -> BeirDataset:
    qrels = _read_qrels(_qrels_path(directory))
    queries = {
        row["_id"]: row["text"]
        for row in _read_jsonl(directory / "queries.jsonl")
        if row["_id"] in qrels
    }
    corpus = [
        BeirDocument(str(row["_id"]), row.get("title") or "", row["text"])
        for row in _read_jsonl(directory / "corpus.jsonl")
    ]
    return BeirDataset(corpus, queries, {q: qrels[q] for q in queries})


def _qrels_path(directory: Path) -> Path:
    for name in QRELS_NAMES:
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"no test qrels in {directory} (looked for {', '.join(QRELS_NAMES)})")


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with path.open(newline="") as file:
        for row in csv.DictReader(file, delimiter="\t"):
            qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = int(row["score"])
    return qrels


def _read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]
