"""The `pagedrag` command as a user runs it: real subprocesses, one-line errors."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def pagedrag(
    *args: str, home: Path | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if home is not None:
        env["PAGEDRAG_HOME"] = str(home)
    code = "import sys; from api.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=600,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pagedrag: error:") and fragment in lines[0]
    assert "Traceback" not in result.stderr


def test_pull_unknown_model_lists_known_ones(tmp_path: Path) -> None:
    assert_one_line_error(pagedrag("pull", "nope", home=tmp_path), "smollm2:135m-instruct")


def test_generate_with_a_missing_path(tmp_path: Path) -> None:
    result = pagedrag("generate", "--model", str(tmp_path / "nope.gguf"), "hi", home=tmp_path)
    assert_one_line_error(result, "no such file or directory")


def test_generate_with_an_unsupported_directory(tmp_path: Path) -> None:
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text('{"model_type": "bert"}')
    result = pagedrag("generate", "--model", str(tmp_path / "bert"), "hi", home=tmp_path)
    assert_one_line_error(result, "'bert'")


def test_models_on_an_empty_store_says_how_to_pull(tmp_path: Path) -> None:
    result = pagedrag("models", home=tmp_path)
    assert result.returncode == 0
    assert "pagedrag pull qwen2.5-coder:0.5b-instruct" in result.stdout


@pytest.mark.slow
def test_models_lists_the_library_models() -> None:
    result = pagedrag("models")  # the default store, filled by `make models`
    assert result.returncode == 0
    assert "smollm2:135m-instruct" in result.stdout and "llama" in result.stdout


@pytest.mark.slow
def test_generate_streams_an_answer() -> None:
    result = pagedrag(
        "generate",
        "--model",
        "smollm2:135m-instruct",
        "--max-tokens",
        "12",
        "What is the capital of France?",
    )
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout


@pytest.mark.slow
def test_run_is_a_multi_turn_chat_that_ends_on_bye() -> None:
    result = pagedrag(
        "run",
        "smollm2:135m-instruct",
        "--max-tokens",
        "12",
        stdin="What is the capital of France?\nAnd of Italy?\n/bye\n",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(">>> ") == 3
    assert "Paris" in result.stdout and "Rome" in result.stdout
