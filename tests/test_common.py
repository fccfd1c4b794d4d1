"""The common layer: one script definition and one home directory for every package."""

from pathlib import Path

import pytest

from common.paths import pagedrag_home
from common.scripts import has_han, is_han
from indexer.paths import default_data_dir
from indexer.text_analysis import analyze
from rag.language import Language, detect_language


@pytest.mark.parametrize(
    ("character", "han"),
    [("中", True), ("㐀", True), ("豈", True), ("あ", False), ("한", False), ("a", False)],
)
def test_han_characters_are_chinese_ones_only(character: str, han: bool) -> None:
    assert is_han(character) is han


def test_one_definition_serves_the_analyzer_and_the_language_detector() -> None:
    assert has_han("PagedRAG 的块") and not has_han("ひらがな and English")
    assert analyze("分页注意力") == ["分页", "页注", "注意", "意力"]
    assert analyze("ひらがな") == ["ひら", "らが", "がな"]  # kana: cut like Chinese
    assert detect_language("ひらがなのテキスト") is Language.ENGLISH  # but it is not Chinese


def test_models_and_data_share_one_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PAGEDRAG_DATA_DIR", raising=False)
    monkeypatch.setenv("PAGEDRAG_HOME", str(tmp_path))
    assert pagedrag_home() == tmp_path
    assert default_data_dir() == tmp_path / "data"
    monkeypatch.delenv("PAGEDRAG_HOME")
    assert pagedrag_home() == Path.home() / ".cache" / "pagedrag"
