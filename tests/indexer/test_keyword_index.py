"""BM25: ranking, Chinese, deletes, segment merges and persistence."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer import keyword_index
from indexer.keyword_index import MERGE_FACTOR, KeywordIndex
from indexer.text_analysis import analyze

DOCS = {
    1: "The cat sat on the mat.",
    2: "Dogs are running in the park.",
    3: "法国的首都是巴黎。",
    4: "A cat and a dog play; the cat wins.",
    5: "Paged attention stores the KV cache in blocks.",
}


def build() -> KeywordIndex:
    index = KeywordIndex()
    index.add(list(DOCS)[:3], list(DOCS.values())[:3])
    index.add(list(DOCS)[3:], list(DOCS.values())[3:])
    return index


def test_english_terms_are_stemmed_and_stop_words_dropped():
    assert analyze("The dogs were Running") == ["dog", "run"]


def test_chinese_becomes_character_bigrams():
    assert analyze("巴黎首都") == ["巴黎", "黎首", "首都"]
    assert analyze("在 abc中文") == ["在", "abc", "中文"]


def test_more_matching_terms_rank_higher():
    scores, ids = build().search("cat dog", 5)
    assert ids.tolist()[0] == 4
    assert set(ids.tolist()) == {1, 2, 4}
    assert np.all(np.diff(scores) <= 0)


def test_chinese_query_finds_chinese_text_without_spaces():
    _, ids = build().search("巴黎是哪个国家的首都", 5)
    assert ids.tolist() == [3]


def test_removed_chunks_are_never_returned():
    index = build()
    index.remove([4, 1])
    _, ids = index.search("cat", 5)
    assert ids.tolist() == []
    assert sorted(index.ids().tolist()) == [2, 3, 5]


def test_allowed_restricts_results():
    _, ids = build().search("cat", 5, allowed=np.array([1]))
    assert ids.tolist() == [1]


def test_save_and_load_round_trip(tmp_path):
    index = build()
    index.remove([2])
    index.save(tmp_path)
    loaded = KeywordIndex.load(tmp_path)
    assert sorted(loaded.ids().tolist()) == [1, 3, 4, 5]
    for query in ("cat", "blocks", "巴黎"):
        assert [a.tolist() for a in loaded.search(query, 5)] == [
            a.tolist() for a in index.search(query, 5)
        ]


def test_saving_again_removes_files_of_merged_segments(tmp_path):
    index = KeywordIndex()
    for i in range(12):  # more segments than the merge limit
        index.add([i], [f"text number {i}"])
        index.save(tmp_path)
    listed = {p.name for p in tmp_path.iterdir()}
    segment_files = [name for name in listed if name.endswith(".npz")]
    assert len(segment_files) == len(index._segments) < 12


def test_merges_go_by_size_tier_so_each_chunk_is_merged_a_few_times(monkeypatch):
    merged_rows = []
    merge = KeywordIndex._merge

    def counting(self, group):
        merged_rows.append(sum(len(segment.chunk_ids) for segment in group))
        merge(self, group)

    monkeypatch.setattr(keyword_index.KeywordIndex, "_merge", counting)
    index = KeywordIndex()
    batches, size = 600, 4
    for batch in range(batches):
        ids = list(range(batch * size, (batch + 1) * size))
        index.add(ids, [f"note {i} about tides" for i in ids])
    chunks = batches * size
    # 4 -> 32 -> 256 -> 2048 chunks: each chunk merged at most 3 times (all-at-once
    # merging would have merged the index every few batches: ~chunks² / 64 rows).
    assert sum(merged_rows) <= 3 * chunks
    assert len(index._segments) <= (MERGE_FACTOR - 1) * 4
    assert len(index) == chunks
    _, ids = index.search("note 1234", 3)
    assert ids[0] == 1234


WORDS = ["cat", "dog", "bird", "fish", "tree", "blue", "red", "fast"]


@settings(max_examples=40, deadline=None)
@given(
    batches=st.lists(
        st.lists(st.lists(st.sampled_from(WORDS), min_size=1, max_size=6), min_size=1, max_size=4),
        min_size=1,
        max_size=12,
    ),
    removed=st.sets(st.integers(0, 40)),
    query=st.lists(st.sampled_from(WORDS), min_size=1, max_size=3),
)
def test_scores_do_not_depend_on_how_chunks_were_batched(batches, removed, query):
    """Segments and merges are an implementation detail: one batch must score the same."""
    incremental, single = KeywordIndex(), KeywordIndex()
    texts, next_id = {}, 0
    for batch in batches:
        ids = list(range(next_id, next_id + len(batch)))
        next_id += len(batch)
        texts.update(zip(ids, (" ".join(words) for words in batch), strict=True))
        incremental.add(ids, [texts[i] for i in ids])
    incremental.remove(removed)
    kept = [i for i in texts if i not in removed]
    single.add(kept, [texts[i] for i in kept])
    a_scores, a_ids = incremental.search(" ".join(query), 50)
    b_scores, b_ids = single.search(" ".join(query), 50)
    assert dict(zip(a_ids.tolist(), a_scores.tolist(), strict=True)) == pytest.approx(
        dict(zip(b_ids.tolist(), b_scores.tolist(), strict=True)), rel=1e-5
    )
