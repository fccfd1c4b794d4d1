"""The one definition of the scripts written without spaces between words.

The indexer cuts them into characters and bigrams (terms, chunk boundaries); the RAG
layer and the server call a text Chinese when enough of its letters are Chinese
characters.
"""

import re

# Chinese characters: extension A, the unified block and the compatibility block.
HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# Plus Japanese kana and Korean hangul: every script the analyzers cut per character.
CJK = HAN + "\u3040-\u30ff\uac00-\ud7af"
_HAN_CHARACTER = re.compile(f"[{HAN}]")


def is_han(character: str) -> bool:
    """A Chinese character (as the language detector counts them)."""
    return _HAN_CHARACTER.fullmatch(character) is not None


def has_han(text: str) -> bool:
    return _HAN_CHARACTER.search(text) is not None
