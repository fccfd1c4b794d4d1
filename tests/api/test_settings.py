"""The `PAGEDRAG_` variables are read once, at the edge, into typed settings."""

from pathlib import Path

import pytest

from api.cli import main
from api.settings import Settings
from common.errors import InvalidInputError
from common.paths import default_home


def test_every_variable_reaches_its_section(tmp_path: Path) -> None:
    settings = Settings.from_environment(
        {
            "PAGEDRAG_HOME": str(tmp_path / "home"),
            "PAGEDRAG_DATABASE_URL": "postgresql+psycopg://u@db/library",
            "PAGEDRAG_ATTENTION": "reference",
            "PAGEDRAG_API_KEY": "s3cret",
        }
    )
    assert settings.engine.home == tmp_path / "home"
    assert settings.library.data_dir == tmp_path / "home" / "data"  # under the home
    assert settings.library.database_url == "postgresql+psycopg://u@db/library"
    assert settings.engine.attention_backend == "reference"
    assert settings.api_key == "s3cret"
    assert settings.engine_options() == {
        "home": tmp_path / "home",
        "attention_backend": "reference",
    }


def test_unset_and_empty_variables_mean_the_defaults(tmp_path: Path) -> None:
    empty = {"PAGEDRAG_HOME": "", "PAGEDRAG_ATTENTION": "", "PAGEDRAG_DATABASE_URL": ""}
    for environ in ({}, empty):
        settings = Settings.from_environment(environ)
        assert settings.engine.home == default_home()
        assert settings.library.data_dir == default_home() / "data"
        assert settings.library.database_url is None
        assert settings.engine.attention_backend is None and settings.api_key is None
    moved = Settings.from_environment({"PAGEDRAG_DATA_DIR": str(tmp_path / "docs")})
    assert moved.library.data_dir == tmp_path / "docs" and moved.engine.home == default_home()


def test_an_unknown_attention_backend_is_named_with_its_variable() -> None:
    with pytest.raises(
        InvalidInputError, match="PAGEDRAG_ATTENTION must be one of triton, cpu, reference"
    ):
        Settings.from_environment({"PAGEDRAG_ATTENTION": "flash"})


def test_the_command_line_says_so_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("PAGEDRAG_ATTENTION", "flash")
    assert main(["documents", "--data-dir", str(tmp_path)]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("pagedrag: error: PAGEDRAG_ATTENTION must be one of")
    assert "\n" not in error


def test_a_command_hands_the_engine_one_typed_config(tmp_path: Path) -> None:
    from api.cli import build_parser
    from api.cli.options import engine_config
    from engine.config import EngineConfig

    args = build_parser().parse_args(
        ["ask", "Why?", "--model", "smollm2:135m-instruct", "--kv-cache-memory", "1G"]
    )
    args.settings = Settings.from_environment(
        {"PAGEDRAG_HOME": str(tmp_path), "PAGEDRAG_ATTENTION": "reference"}
    )
    config = engine_config(args)
    assert config == EngineConfig(
        model="smollm2:135m-instruct",
        kv_cache_memory=1 << 30,
        home=tmp_path,
        attention_backend="reference",
    )


def test_the_passage_cache_flags_reach_the_engine_config(tmp_path: Path) -> None:
    from api.cli import build_parser
    from api.cli.options import engine_config

    parser = build_parser()
    args = parser.parse_args(["serve", "--passage-cache", "off", "--passage-recompute-tokens", "8"])
    args.settings = Settings.from_environment({"PAGEDRAG_HOME": str(tmp_path)})
    config = engine_config(args)
    assert not config.enable_passage_cache and config.passage_recompute_tokens == 8
    args = parser.parse_args(["serve"])
    args.settings = Settings.from_environment({"PAGEDRAG_HOME": str(tmp_path)})
    config = engine_config(args)
    assert config.enable_passage_cache and config.passage_recompute_tokens == 16  # the default


def test_bad_passage_cache_flags_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert (
        main(["ask", "Why?", "--passage-recompute-tokens", "-1", "--data-dir", str(tmp_path)]) == 1
    )
    error = capsys.readouterr().err.strip()
    assert error == "pagedrag: error: passage_recompute_tokens must be 0 or more, got -1"
    with pytest.raises(SystemExit) as exited:
        main(["ask", "Why?", "--passage-cache", "maybe"])
    assert exited.value.code == 2
    assert "invalid choice: 'maybe'" in capsys.readouterr().err


def test_rag_takes_an_engine_config_or_engine_options_not_both(tmp_path: Path) -> None:
    from engine.config import EngineConfig
    from rag import RAG

    with pytest.raises(TypeError, match="not both"):
        RAG(tmp_path / "library", engine_config=EngineConfig(), kv_cache_memory=1 << 20)
    assert not (tmp_path / "library").exists()  # refused before anything was opened
