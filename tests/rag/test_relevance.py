"""Relevance and rank agree: the passages kept are the top of one score (no model needed)."""

from dataclasses import replace

import pytest

from rag.language import Language
from rag.relevance import CALIBRATIONS, RelevanceJudge, named_subjects, term_share
from tests.rag.test_prompt import hit

E5 = "multilingual-e5-small"
QUESTION = "How do I remove a package together with its configuration files?"


def scored(chunk_id: int, text: str, cosine: float | None, rrf: float):
    return replace(hit(chunk_id, 1, text, score=rrf), dense_score=cosine, relevant=False)


def test_term_share_counts_distinct_question_terms_in_the_passage() -> None:
    assert term_share("remove packages", "Removing a package: apt remove") == 1.0
    assert term_share("remove packages", "Installing software") == 0.0
    assert term_share("龙井茶的产地", "龙井茶产于杭州") == pytest.approx(2 / 5)  # bigrams
    assert term_share("the of and", "anything") == 0.0  # only stop words: nothing asked


def test_the_kept_passages_are_the_top_of_the_same_score_that_keeps_them() -> None:
    # The fused (RRF) rank put two weak passages first; relevance must not follow it.
    hits = [
        scored(1, "Upgrading the whole system with apt full-upgrade.", 0.80, rrf=0.9),
        scored(2, "The weather in Lisbon is mild.", 0.70, rrf=0.8),
        scored(3, "apt purge removes a package and its configuration files.", 0.86, rrf=0.3),
        scored(4, "To remove a package, run apt remove; configuration files stay.", 0.85, rrf=0.2),
    ]
    judge = RelevanceJudge(E5, fallback_threshold=0.84)
    kept = judge.relevant(QUESTION, Language.ENGLISH, hits)
    assert [s.hit.chunk_id for s in kept] == [3, 4]  # by relevance, not by the RRF rank
    threshold = CALIBRATIONS[E5].thresholds[Language.ENGLISH]
    dropped = [judge.score(QUESTION, Language.ENGLISH, h) for h in hits[:2]]
    assert min(s.relevance for s in kept) >= threshold > max(dropped)
    assert [s.relevance for s in kept] == sorted((s.relevance for s in kept), reverse=True)


def test_chinese_on_an_english_only_embedder_is_judged_by_its_terms_alone() -> None:
    question = "龙井茶什么时候采摘？"
    tea = scored(1, "龙井茶的采摘时间通常在每年三月下旬。", 0.10, rrf=0.5)
    # A high cosine means nothing here:
    noise = scored(2, "今天天气很好，我们去公园散步。", 0.95, rrf=0.9)
    judge = RelevanceJudge("all-minilm-l6-v2", fallback_threshold=0.35)
    kept = judge.relevant(question, Language.CHINESE, [noise, tea])
    assert [s.hit.chunk_id for s in kept] == [1]


def test_an_uncalibrated_embedder_keeps_its_own_cosine_threshold() -> None:
    hits = [scored(1, "alpha", 0.5, rrf=0.9), scored(2, "beta", 0.7, rrf=0.1)]
    judge = RelevanceJudge("/models/my-embedder", fallback_threshold=0.6)
    assert [s.hit.chunk_id for s in judge.relevant("gamma?", Language.ENGLISH, hits)] == [2]


@pytest.mark.parametrize(
    ("question", "language", "subjects"),
    [
        (
            "在 Debian 上如何配置 WireGuard VPN 隧道？",
            Language.CHINESE,
            ["Debian", "WireGuard", "VPN"],
        ),
        ("Which line of pg_hba.conf allows password logins?", Language.ENGLISH, ["pg_hba.conf"]),
        ("What does VACUUM do in PostgreSQL?", Language.ENGLISH, ["VACUUM", "PostgreSQL"]),
        ("How do I remove a package with apt?", Language.ENGLISH, []),  # plain words: none
        ("龙井茶什么时候采摘？", Language.CHINESE, []),
    ],
)
def test_named_subjects_are_names_not_plain_words(
    question: str, language: Language, subjects: list[str]
) -> None:
    assert named_subjects(question, language) == subjects


def test_a_question_whose_subject_no_candidate_names_has_nothing_relevant() -> None:
    question = "在 Debian 上如何配置 WireGuard VPN 隧道？"
    debian = scored(
        1, "在 Debian 上配置 VPN：安装 openvpn 软件包，然后编辑配置文件。", 0.95, rrf=0.9
    )
    judge = RelevanceJudge(E5, fallback_threshold=0.84)
    assert judge.relevant(question, Language.CHINESE, [debian]) == []  # close, but no WireGuard
    wireguard = scored(2, "WireGuard 隧道的配置写在 /etc/wireguard/wg0.conf 里。", 0.93, rrf=0.5)
    kept = judge.relevant(question, Language.CHINESE, [debian, wireguard])
    assert {s.hit.chunk_id for s in kept} == {1, 2}  # named by one of them: scores decide


def test_a_draft_answers_terms_rank_the_passage_that_names_them() -> None:
    question = "Which module compares how fast two small code snippets run?"
    hits = [
        scored(1, "Snippets run in the interactive interpreter.", 0.87, rrf=0.9),
        scored(2, "The timeit module quickly demonstrates a modest advantage.", 0.87, rrf=0.2),
    ]
    judge = RelevanceJudge(E5, fallback_threshold=0.84)
    alone = judge.relevant(question, Language.ENGLISH, hits)
    drafted = judge.relevant(question, Language.ENGLISH, hits, "The timeit module demonstrates it.")
    assert [s.hit.chunk_id for s in alone] == [1, 2]
    assert [s.hit.chunk_id for s in drafted] == [2, 1]


def test_subjects_a_draft_names_are_not_required_of_the_passages() -> None:
    # The model may draft an identifier no passage holds; the question named none.
    hits = [scored(1, "apt purge removes a package and its configuration files.", 0.90, rrf=0.9)]
    judge = RelevanceJudge(E5, fallback_threshold=0.84)
    kept = judge.relevant(QUESTION, Language.ENGLISH, hits, "Run `dpkg --purge-all` on it.")
    assert [s.hit.chunk_id for s in kept] == [1]


def test_a_wrong_draft_does_not_bury_the_passage_with_the_questions_words() -> None:
    text = "apt purge removes a package together with its configuration files."
    purge = scored(1, text, 0.85, 0.5)
    other = scored(2, "Run apt remove name; apt lists what it will do.", 0.86, 0.9)
    judge = RelevanceJudge(E5, fallback_threshold=0.84)
    draft = "Use `apt remove name` to do it."
    first = judge.relevant(QUESTION, Language.ENGLISH, [other, purge], draft)[0]
    assert first.hit.chunk_id == 1
    alone = judge.relevant(QUESTION, Language.ENGLISH, [other, purge])[0]
    assert first.relevance == alone.relevance  # the draft took nothing from it
