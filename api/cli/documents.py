"""`pagedrag ingest`, `documents`, `delete`, `search` and `reindex`: the indexer from a shell."""

import argparse
import sys
from typing import Any

from api.cli.models import format_table, human_size
from api.cli.options import (
    add_library_options,
    add_tenant_option,
    library_options,
    tenant_option,
)


def add_parsers(subparsers: Any) -> None:
    ingest = subparsers.add_parser(
        "ingest", help="add files and folders (recursively) to the index"
    )
    ingest.add_argument("paths", nargs="+", metavar="PATH")
    ingest.add_argument("--collection", help="collection to add to (default: 'default')")
    ingest.add_argument("--quiet", action="store_true", help="no progress bars")
    add_library_options(ingest)
    add_tenant_option(ingest)
    _chunk_options(ingest)
    ingest.set_defaults(handler=run_ingest)

    documents = subparsers.add_parser("documents", help="list the indexed documents")
    documents.add_argument("--collection", help="only this collection")
    add_library_options(documents)
    add_tenant_option(documents)
    documents.set_defaults(handler=run_documents)

    remove = subparsers.add_parser("delete", help="remove documents from the index")
    remove.add_argument("ids", nargs="+", type=int, metavar="ID")
    add_library_options(remove)
    add_tenant_option(remove)
    remove.set_defaults(handler=run_delete)

    search = subparsers.add_parser("search", help="show the passages a question retrieves")
    search.add_argument("query", metavar="QUERY")
    search.add_argument("-k", type=int, default=5, help="how many passages (default 5)")
    search.add_argument("--mode", choices=("hybrid", "dense", "bm25"), default="hybrid")
    search.add_argument("--collection", help="only this collection")
    add_library_options(search)
    add_tenant_option(search)
    search.set_defaults(handler=run_search)

    reindex = subparsers.add_parser(
        "reindex", help="rebuild every index from the database (e.g. with another embedder)"
    )
    reindex.add_argument("--quiet", action="store_true", help="no progress bars")
    add_library_options(reindex)
    _chunk_options(reindex)
    reindex.set_defaults(handler=run_reindex)


def _chunk_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--chunk-tokens",
        type=int,
        default=None,
        help="tokens per chunk (default: the index's setting, else 200; "
        "changing it needs `reindex`)",
    )
    parser.add_argument(
        "--chunk-overlap",
        type=int,
        default=None,
        help="tokens shared by consecutive chunks (default: a fifth of --chunk-tokens)",
    )


def _open(args: argparse.Namespace) -> Any:
    from indexer import Index, IndexConfig

    library = library_options(args)
    return Index(
        library.data_dir,
        embedder=library.embedder,
        database_url=library.database_url,
        config=IndexConfig(chunking=_chunking(args)),
    )


def _chunking(args: argparse.Namespace) -> Any:
    """The chunking asked for on the command line; None: the index's own."""
    from indexer import ChunkingConfig
    from indexer.errors import IndexerError

    tokens, overlap = getattr(args, "chunk_tokens", None), getattr(args, "chunk_overlap", None)
    if tokens is None and overlap is None:
        return None
    if tokens is None:
        tokens = ChunkingConfig().max_tokens or 0  # the default size
    overlap = tokens // 5 if overlap is None else overlap
    try:
        return ChunkingConfig(max_tokens=tokens, overlap_tokens=overlap)
    except ValueError as error:
        raise IndexerError(f"{error} (--chunk-tokens, --chunk-overlap)") from None


def run_ingest(args: argparse.Namespace) -> int:
    with _open(args) as index, PhaseBars(enabled=not args.quiet) as bars:
        report = index.ingest_files(
            args.paths, args.collection, progress=bars.update, tenant=tenant_option(args)
        )
    print(
        f"{report.new_documents} new documents, {report.pages} pages, {report.chunks} chunks; "
        f"{report.duplicates} duplicates skipped; {len(report.failures)} failed"
    )
    if report.skipped_unsupported:
        print(f"{len(report.skipped_unsupported)} files of unsupported types skipped")
    for failure in report.failures:
        print(f"failed: {failure.error}", file=sys.stderr)
    return 1 if report.failures else 0


def run_documents(args: argparse.Namespace) -> int:
    with _open(args) as index:
        documents = index.documents(args.collection, tenant=tenant_option(args))
    if not documents:
        print("no documents yet; add some with: pagedrag ingest PATH")
        return 0
    rows = [("ID", "COLLECTION", "STATUS", "PAGES", "CHUNKS", "SIZE", "TITLE")]
    for d in documents:
        title = d.title if d.error is None else f"{d.title}  ({d.error})"
        pages = "-" if d.page_count is None else str(d.page_count)
        size = human_size(d.size_bytes)
        rows.append((str(d.id), d.collection, d.status, pages, str(d.num_chunks), size, title))
    print("\n".join(format_table(rows)))
    return 0


def run_delete(args: argparse.Namespace) -> int:
    with _open(args) as index:
        for document_id in args.ids:
            index.delete(document_id, tenant=tenant_option(args))
            print(f"deleted document {document_id}")
    return 0


def run_search(args: argparse.Namespace) -> int:
    with _open(args) as index:
        hits = index.search(
            args.query,
            k=args.k,
            mode=args.mode,
            collection=args.collection,
            tenant=tenant_option(args),
        )
    if not hits:
        print("nothing found")
    for rank, hit in enumerate(hits, 1):
        where = f"{hit.title}, p. {hit.page}" if hit.page else hit.title
        flag = "" if hit.relevant else "  (below the relevance threshold)"
        snippet = " ".join(hit.text.split())[:300]
        print(f"[{rank}] {where}  (document {hit.document_id}, score {hit.score:.4f}){flag}")
        print(f"    {snippet}")
    return 0


def run_reindex(args: argparse.Namespace) -> int:
    with _open(args) as index, PhaseBars(enabled=not args.quiet) as bars:
        index.reindex(progress=bars.update)
        print(f"re-indexed {index.document_count()} documents with {index.embedder.name}")
    return 0


class PhaseBars:
    """One tqdm bar per phase (parse, chunk, embed), on stderr."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Any = None
        self._phase: str | None = None

    def update(self, phase: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if phase != self._phase:
            from tqdm import tqdm

            self.close()
            self._phase = phase
            self._bar = tqdm(
                total=total,
                desc=f"{phase:>5}",
                unit="doc" if phase != "embed" else "chunk",
                file=sys.stderr,
            )
        self._bar.total = total
        self._bar.n = done
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "PhaseBars":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
