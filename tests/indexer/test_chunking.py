"""Chunking: token budgets, exact offsets, sentence ends preferred, pages never crossed."""

import itertools
import re

import pytest

from indexer.chunking import ChunkingConfig, Region, chunk_text

_TOKEN = re.compile(r"[\u4e00-\u9fff]|[^\s\u4e00-\u9fff]+")


def count_tokens(texts):
    """One token per word or Chinese character: predictable, like a real tokenizer's order."""
    return [len(_TOKEN.findall(text)) for text in texts]


def sentences(n: int, words: int = 9) -> str:
    return " ".join(f"Sentence {i} " + " ".join(["word"] * (words - 3)) + " end." for i in range(n))


def test_chunks_fit_the_budget_and_their_offsets_point_at_their_text():
    text = sentences(40)
    chunks = chunk_text(text, [Region(0, len(text))], count_tokens, ChunkingConfig(50, 10))
    assert len(chunks) > 5
    for chunk in chunks:
        assert chunk.token_count <= 50
        assert text[chunk.start : chunk.end] == chunk.text
        assert chunk.page is None
    assert chunks[0].start == 0 and chunks[-1].end == len(text)


def test_chunks_end_at_sentence_ends_when_they_can():
    text = sentences(40)
    chunks = chunk_text(text, [Region(0, len(text))], count_tokens, ChunkingConfig(50, 10))
    assert all(chunk.text.endswith("end.") for chunk in chunks)
    assert all(chunk.text.startswith("Sentence") for chunk in chunks)


def test_paragraph_breaks_beat_sentence_ends():
    paragraph = sentences(3)
    text = f"{paragraph}\n\n{paragraph}\n\n{paragraph}"
    chunks = chunk_text(text, [Region(0, len(text))], count_tokens, ChunkingConfig(64, 0))
    assert [chunk.text for chunk in chunks] == [f"{paragraph}\n\n{paragraph}", paragraph]


def test_consecutive_chunks_overlap_by_at_most_the_overlap():
    text = sentences(40)
    chunks = chunk_text(text, [Region(0, len(text))], count_tokens, ChunkingConfig(50, 20))
    for before, after in itertools.pairwise(chunks):
        assert after.start < before.end, "no overlap"
        overlap = text[after.start : before.end]
        assert count_tokens([overlap])[0] <= 20
        assert after.start > before.start


def test_no_overlap_means_chunks_tile_the_text():
    text = sentences(30)
    chunks = chunk_text(text, [Region(0, len(text))], count_tokens, ChunkingConfig(40, 0))
    joined = " ".join(chunk.text for chunk in chunks)
    assert joined == text


def test_chinese_chunks_end_on_chinese_sentence_marks():
    text = "检索增强生成把搜索和语言模型结合起来。它先检索相关段落，然后生成答案！这有用吗？" * 12
    chunks = chunk_text(text, [Region(0, len(text))], count_tokens, ChunkingConfig(60, 10))
    assert len(chunks) > 3
    for chunk in chunks[:-1]:
        assert chunk.text[-1] in "。！？", chunk.text
        assert chunk.token_count <= 60


def test_a_sentence_longer_than_a_chunk_is_split_between_words():
    text = " ".join(f"w{i}" for i in range(100)) + "."
    chunks = chunk_text(text, [Region(0, len(text))], count_tokens, ChunkingConfig(30, 0))
    assert len(chunks) == 4
    assert all(chunk.token_count <= 30 for chunk in chunks)
    # Each chunk is whole words: it starts at a word's start and ends at a word's end.
    assert all(re.fullmatch(r"w\d+( w\d+)*\.?", chunk.text) for chunk in chunks), chunks
    assert " ".join(chunk.text for chunk in chunks) == text


def test_chunks_never_cross_pages_and_keep_their_page_number():
    page_one, page_two = sentences(3), sentences(2)
    text = f"{page_one}\n\n{page_two}"
    regions = [Region(0, len(page_one), 1), Region(len(page_one) + 2, len(text), 2)]
    chunks = chunk_text(text, regions, count_tokens, ChunkingConfig(200, 0))
    assert [(chunk.page, chunk.text) for chunk in chunks] == [(1, page_one), (2, page_two)]


def test_whole_chunking_keeps_one_chunk_per_page_however_long():
    page_one, page_two = sentences(50), sentences(2)
    text = f"{page_one}\n\n{page_two}  "
    regions = [Region(0, len(page_one), 1), Region(len(page_one) + 2, len(text), 2)]
    chunks = chunk_text(text, regions, count_tokens, ChunkingConfig.whole())
    assert [(chunk.page, chunk.text) for chunk in chunks] == [(1, page_one), (2, page_two)]
    assert chunks[0].token_count == count_tokens([page_one])[0] > 200


@pytest.mark.parametrize(("size", "overlap"), [(8, 0), (100, 60), (100, -1), (None, 40)])
def test_bad_chunking_settings_are_refused(size, overlap):
    with pytest.raises(ValueError, match="chunk"):
        ChunkingConfig(size, overlap)
