"""Ingestion speed: a real multi-hundred-page PDF, and 5,000 short texts.

    python -m bench.ingest_speed [--package debian-reference-en] [--rounds 3] [--texts 5000]

PDF: the script fetches a Debian documentation package with `apt-get download` into a
temporary folder (nothing is kept), takes its largest PDF and ingests it through
`Index.ingest_files` into a fresh index, timing the parse, chunk and embed phases from
the `progress` callback (each phase ends at its last report; "embed" includes the
commits and the index save). The embedder is loaded before the clock starts.

Short texts: `ingest_texts` of N one-to-three-sentence texts (the first sentences of
SciFact abstracts, given without a title, as an API user would) against embedding the
same texts directly with `embed_documents`. The requirement is that ingesting must not
take minutes longer than embedding; the overhead ratio says by how much it does.
"""

import argparse
import os
import re
import statistics
import subprocess
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from bench.beir import load_beir
from bench.retrieval_beir import DEFAULT_DIR
from bench.retrieval_metrics import machine, save_result
from indexer import Index

SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def fetch_pdf(package: str, workdir: Path) -> Path:
    """The largest PDF in a Debian package, downloaded and unpacked under `workdir`."""
    download = ["apt-get", "download", package]
    if subprocess.run(download, cwd=workdir, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update"], check=True, capture_output=True)
        subprocess.run(download, cwd=workdir, check=True, capture_output=True)
    deb = next(workdir.glob(f"{package}_*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(workdir / "root")], check=True)
    return max((workdir / "root").rglob("*.pdf"), key=lambda p: p.stat().st_size)


def warm_index(data_dir: Path) -> Index:
    """A fresh index whose embedder is already loaded, so no round pays for the load."""
    index = Index(data_dir)
    index.embedder.embed_documents(["warm up"])
    return index


def time_pdf(pdf: Path) -> dict:
    marks: dict[str, float] = {}

    def progress(phase: str, done: int, total: int) -> None:
        marks[phase] = time.perf_counter()

    with (
        tempfile.TemporaryDirectory(prefix="ingest-") as data_dir,
        warm_index(Path(data_dir)) as index,
    ):
        load = os.getloadavg()[0]
        start = time.perf_counter()
        report = index.ingest_files(pdf, progress=progress)
        total = time.perf_counter() - start
    parse_s, chunk_s = marks["parse"] - start, marks["chunk"] - marks["parse"]
    embed_s = marks["embed"] - marks["chunk"]
    return {
        "load_average_1m": load,
        "pages": report.pages,
        "chunks": report.chunks,
        "parse_s": parse_s,
        "chunk_s": chunk_s,
        "embed_s": embed_s,
        "total_s": total,
        "pages_per_s_parse": report.pages / parse_s,
        "pages_per_s_total": report.pages / total,  # parse, chunk, embed, commit and save
        "chunks_per_s_embed": report.chunks / embed_s,
    }


def short_texts(count: int) -> list[str]:
    """The first one to three sentences (at most ~60 words) of SciFact abstracts."""
    texts = []
    for document in load_beir(DEFAULT_DIR).corpus:
        sentences = SENTENCE_END.split(document.text.strip())
        text = sentences[0]
        for sentence in sentences[1:3]:
            if len((text + " " + sentence).split()) > 60:
                break
            text += " " + sentence
        texts.append(text)
    unique = list(dict.fromkeys(texts))
    return unique[:count]


def time_short_texts(texts: list[str]) -> dict:
    """ingest_texts vs embedding the same texts directly (what the index embeds for them)."""
    with (
        tempfile.TemporaryDirectory(prefix="ingest-") as data_dir,
        warm_index(Path(data_dir)) as index,
    ):
        load = os.getloadavg()[0]
        start = time.perf_counter()
        index.ingest_texts([{"text": text} for text in texts])
        ingest_s = time.perf_counter() - start
        start = time.perf_counter()
        index.embedder.embed_documents(texts)
        embed_s = time.perf_counter() - start
    return {
        "load_average_1m": load,
        "texts": len(texts),
        "ingest_s": ingest_s,
        "embed_s": embed_s,
        "overhead_ratio": ingest_s / embed_s,
        "overhead_s": ingest_s - embed_s,
    }


def spread(rounds: list[dict]) -> dict[str, str]:
    """median (min–max) of every numeric figure across rounds."""
    values: dict[str, list[float]] = defaultdict(list)
    for r in rounds:
        for key, value in r.items():
            values[key].append(value)
    return {
        key: f"{statistics.median(v):.3g} ({min(v):.3g}–{max(v):.3g})" for key, v in values.items()
    }


def markdown(title: str, summary: dict[str, str]) -> str:
    lines = [f"**{title}**", "", "| figure | median (min–max) |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in summary.items()]
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--package", default="debian-reference-en", help="Debian package")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--texts", type=int, default=5000, help="0: the PDF only")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    started = machine()
    texts = short_texts(args.texts) if args.texts else []
    with tempfile.TemporaryDirectory(prefix="deb-") as workdir:
        pdf = fetch_pdf(args.package, Path(workdir))
        pdf_rounds, text_rounds = [], []
        for _ in range(args.rounds):
            pdf_rounds.append(time_pdf(pdf))
            if texts:
                text_rounds.append(time_short_texts(texts))
        pdf_name = pdf.name
    result = {
        "machine": started,
        "package": args.package,
        "pdf": pdf_name,
        "pdf_rounds": pdf_rounds,
        "short_text_rounds": text_rounds,
        "pdf_summary": spread(pdf_rounds),
        "short_text_summary": spread(text_rounds),
    }
    print(markdown(f"{pdf_name} ({args.package})", result["pdf_summary"]))
    print()
    if texts:
        print(markdown(f"{len(texts)} short texts", result["short_text_summary"]))
    print(f"saved {save_result('ingest_speed', result)}")


if __name__ == "__main__":
    main()
