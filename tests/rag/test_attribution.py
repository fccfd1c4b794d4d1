"""Sources for the sentences a model left uncited: found by shared terms, never guessed."""

from rag.answer import Citation
from rag.attribution import attribute


def passage(n: int, text: str) -> Citation:
    return Citation(n, n, f"doc {n}", None, n, text, 0.5, 0, len(text))


PASSAGES = [
    passage(1, "Wildlife of Botswana. An introduction to the parks."),
    passage(2, "Zebras in the Okavango delta migrate in the dry season."),
    passage(3, "检索增强生成先检索相关段落，再让模型根据段落回答问题。"),
]


def test_each_supported_sentence_points_at_its_passage_before_its_full_stop() -> None:
    answer = "Zebras migrate in the dry season. They cross the Okavango delta!"
    first, second = attribute(answer, PASSAGES)
    assert (first.n, answer[first.start : first.end]) == (2, "Zebras migrate in the dry season")
    assert (second.n, answer[second.start : second.end]) == (2, "They cross the Okavango delta")
    assert first.share == 1.0


def test_sentences_the_passages_do_not_support_get_no_source() -> None:
    answer = "The documents do not contain it. Lions hunt antelopes at dawn in Kenya."
    assert attribute(answer, PASSAGES) == []


def test_sentences_the_model_cited_or_too_short_to_judge_are_left_alone() -> None:
    answer = "Zebras migrate in the dry season [2]. Yes. Zebras migrate in the dry season"
    assert attribute("Yes.", PASSAGES) == []
    (only,) = attribute(answer, PASSAGES)
    assert answer[only.start : only.end] == "Zebras migrate in the dry season"
    assert only.start > answer.index("Yes")


def test_a_short_answer_counts_only_when_one_passage_alone_holds_it() -> None:
    (dry,) = attribute("The dry season.", PASSAGES)
    assert dry.n == 2 and dry.share == 1.0
    shared = [passage(1, "Lions rest in the shade."), passage(2, "Zebras rest at noon.")]
    assert attribute("They rest.", shared) == []  # both passages say it


def test_chinese_sentences_match_by_character_bigrams() -> None:
    answer = "它先检索相关段落。然后模型根据段落回答问题。"
    attributions = attribute(answer, PASSAGES)
    assert [a.n for a in attributions] == [3, 3]
    assert answer[attributions[0].end] == "。"


def test_no_passages_means_no_sources() -> None:
    assert attribute("Zebras migrate in the dry season.", []) == []
