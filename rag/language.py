"""The question's language decides the answer's: Chinese questions get Chinese answers."""

from dataclasses import dataclass
from enum import StrEnum

from common.scripts import is_han

CHINESE_SHARE = 0.2  # of letters; mixed questions ("什么是 FAISS?") still count as Chinese


class Language(StrEnum):
    ENGLISH = "en"
    CHINESE = "zh"


@dataclass(frozen=True)
class Phrases:
    """Fixed texts shown to users in one language."""

    not_found: str  # the answer when retrieval finds nothing relevant
    answer_in: str  # the instruction that fixes the answer's language
    in_words: str  # instead, once the model answered with nothing but a marker ("[2]")
    follow_up: str  # a follow-up the model could not rewrite, with the question before it


PHRASES = {
    Language.ENGLISH: Phrases(
        not_found="I could not find this in your documents.",
        answer_in="Answer in English.",
        in_words="Answer in English, in a full sentence that states the answer itself, "
        "then cite the passage like [1].",
        follow_up="{question} (This follows the earlier question: {previous})",
    ),
    Language.CHINESE: Phrases(
        not_found="在您的文档中没有找到相关内容。",
        answer_in="请用中文回答。",
        in_words="请用中文回答：用一句完整的话写出答案本身，然后注明段落编号，如 [1]。",
        follow_up="{question}（这是接着上一个问题问的：{previous}）",
    ),
}


def detect_language(text: str) -> Language:
    """Chinese when enough of the letters are CJK ideographs, else English."""
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return Language.ENGLISH
    chinese = sum(1 for ch in letters if is_han(ch))
    return Language.CHINESE if chinese / len(letters) >= CHINESE_SHARE else Language.ENGLISH
