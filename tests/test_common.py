"""The common layer: one script definition, one home directory, compute on its own thread."""

import math
import os
import time
from pathlib import Path

import pytest
import torch

from common.own_thread import run_on_own_thread
from common.paths import default_home
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
    monkeypatch.setenv("PAGEDRAG_HOME", str(tmp_path))  # read at the edge only (api/settings.py)
    assert default_home() == Path.home() / ".cache" / "pagedrag"
    assert default_data_dir() == default_home() / "data"
    assert default_data_dir(tmp_path) == tmp_path / "data"


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _parallel_work() -> float:
    return float(torch.ones(1 << 22).exp().sum())  # large enough for OpenMP to split


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc")
def test_work_on_its_own_thread_leaves_no_threads_behind() -> None:
    _parallel_work()  # this thread's own team, if any, exists from here on
    before = _threads()
    assert run_on_own_thread(_parallel_work) == pytest.approx(math.e * (1 << 22), rel=1e-3)
    deadline = time.monotonic() + 5  # NOTE: a thread that was joined leaves the OS a moment later
    while _threads() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _threads() == before


def test_work_on_its_own_thread_raises_in_the_caller() -> None:
    with pytest.raises(ZeroDivisionError):
        run_on_own_thread(lambda: 1 / 0)
