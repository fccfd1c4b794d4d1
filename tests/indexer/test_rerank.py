"""The second stage: no reranker keeps the order; a cross-encoder folder reorders by its scores."""

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from indexer import CrossEncoderReranker, NoReranker
from indexer.embedders import PACKAGED, _package_folder
from indexer.errors import IndexerError
from indexer.records import SearchHit

HIT = SearchHit(
    chunk_id=1,
    document_id=1,
    title="t",
    page=None,
    text="",
    score=0.0,
    metadata={},
    collection="default",
    char_start=0,
    char_end=0,
    dense_score=None,
    bm25_score=None,
    relevant=True,
)
HITS = [replace(HIT, chunk_id=i, text=text) for i, text in enumerate(["alpha", "beta", "gamma"])]


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory) -> Path:
    """A randomly initialised BERT cross-encoder with MiniLM's tokenizer: real code, no download."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("cross-encoder")
    tokenizer = _package_folder(PACKAGED["all-minilm-l6-v2"]) / "model"
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(tokenizer / name, folder / name)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, num_labels=1,
    )  # fmt: skip
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder


def test_no_reranker_keeps_the_retrievers_order():
    assert NoReranker().rerank("q", HITS, 2) == HITS[:2]


def test_cross_encoder_orders_hits_by_its_own_scores(tiny_cross_encoder):
    reranker = CrossEncoderReranker(tiny_cross_encoder)
    ranked = reranker.rerank("which letter?", HITS, 3)
    scores = [hit.score for hit in ranked]
    assert scores == sorted(scores, reverse=True)
    assert {hit.chunk_id for hit in ranked} == {0, 1, 2}
    expected = reranker._load().predict([("which letter?", h.text) for h in HITS])
    assert sorted(scores, reverse=True) == pytest.approx(sorted(map(float, expected), reverse=True))
    assert len(reranker.rerank("which letter?", HITS, 1)) == 1


def test_a_folder_without_a_model_is_refused(tmp_path):
    with pytest.raises(IndexerError, match="not a cross-encoder model folder"):
        CrossEncoderReranker(tmp_path)
