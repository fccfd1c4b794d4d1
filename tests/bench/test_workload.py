"""The benchmark workload: real text from SciFact when present, else the FAQ package."""

import json
import re
import sys
import types
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from bench.workload import build_workload, load_source
from engine.library import resolve_model

FAQ = [
    {"q": f"Question number {i}?", "a": f"Answer {i}: " + "the permit rules say so. " * 8}
    for i in range(40)
]


@pytest.fixture
def fake_faq(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("zaragoza_construction_faq")
    module.load = lambda lang="sv": FAQ if lang == "en" else []  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "zaragoza_construction_faq", module)


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve_model("smollm2:135m-instruct", progress=False))


def test_without_scifact_the_faq_answers_and_questions_are_used(
    tmp_path: Path, fake_faq: None
) -> None:
    source = load_source(tmp_path / "no-such-dir")
    assert source.name.startswith("zaragoza-construction-faq")
    assert source.passages == [pair["a"] for pair in FAQ]
    assert source.questions == [pair["q"] for pair in FAQ]
    assert source.paired


def test_scifact_is_used_when_it_is_there(tmp_path: Path, fake_faq: None) -> None:
    (tmp_path / "corpus.jsonl").write_text(json.dumps({"title": "T", "text": "An abstract."}))
    (tmp_path / "queries.jsonl").write_text(json.dumps({"text": "A claim."}))
    source = load_source(tmp_path)
    assert source.name == f"BEIR SciFact ({tmp_path})"
    assert (source.passages, source.questions) == (["T. An abstract."], ["A claim."])
    assert load_source(tmp_path, "faq").paired


def test_neither_source_says_how_to_install_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "zaragoza_construction_faq", None)  # not installed
    with pytest.raises(SystemExit, match=r"make bench-engine"):
        load_source(tmp_path)


def test_faq_sets_ask_about_their_own_answers(tmp_path: Path, fake_faq: None, tokenizer) -> None:
    source = load_source(tmp_path)
    workload = build_workload(tokenizer, source, num_sets=3, per_set=2, passage_tokens=120)
    assert workload.source == source.name
    assert workload.passage_set_of == [0, 0, 1, 1, 2, 2]
    firsts = []
    for set_index in range(3):
        first, second = workload.prompts[2 * set_index : 2 * set_index + 2]
        shared = workload.shared_prefix_tokens[set_index]
        assert first[:shared] == second[:shared]  # one identical prefix per set
        text = tokenizer.decode(first)
        [answer] = re.findall(r"\[1\] Answer (\d+):", text)
        firsts.append(int(answer))
        assert f"Question number {answer}?" in text  # the question its first passage answers
        assert f"Question number {int(answer) + 1}?" in tokenizer.decode(second)
    assert firsts[0] == 0 and firsts[0] < firsts[1] < firsts[2]  # sets follow one another


def test_the_real_faq_package_gives_enough_text(tokenizer) -> None:
    pytest.importorskip("zaragoza_construction_faq")
    workload = build_workload(tokenizer, load_source(Path("/nonexistent"), "faq"))
    assert len(workload.prompts) == 64
    assert min(workload.shared_prefix_tokens) > 600
