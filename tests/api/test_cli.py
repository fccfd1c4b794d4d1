"""The `pagedrag` command as a user runs it: real subprocesses, one-line errors."""

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from api.cli import main
from engine.library import ModelStore
from engine.library.store import MANIFEST
from tests.thinking_model import ANSWER, THOUGHT, save_thinking_model
from tests.tiny_model import save_tiny_llama

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


def install_fake(home: Path, name: str, architecture: str, size: int) -> Path:
    """A store entry as `pull` leaves it (manifest and files), without real weights."""
    path = ModelStore.default(home).path_for(name)
    path.mkdir(parents=True)
    with (path / "model.safetensors").open("wb") as weights:
        weights.truncate(size)  # sparse: the size is what counts
    (path / MANIFEST).write_text(json.dumps({"name": name, "architecture": architecture}))
    return path


def test_pull_unknown_model_lists_known_ones(tmp_path: Path) -> None:
    result = pagedrag("pull", "nope", home=tmp_path)
    assert_one_line_error(
        result,
        "known models: qwen2.5-coder:0.5b-instruct, qwen2.5-coder:1.5b-instruct, "
        "smollm2:135m-instruct",
    )


def test_pull_of_an_installed_model_prints_its_path_only(tmp_path: Path) -> None:
    path = install_fake(tmp_path, "smollm2:135m-instruct", "llama", 10)
    result = pagedrag("pull", "smollm2:135m-instruct", home=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{path}\n", "")


def test_pull_takes_a_name_without_its_tag_as_ollama_does(tmp_path: Path) -> None:
    path = install_fake(tmp_path, "smollm2:135m-instruct", "llama", 10)
    for name in ("smollm2", "smollm2:latest"):
        result = pagedrag("pull", name, home=tmp_path)
        assert (result.returncode, result.stdout) == (0, f"{path}\n"), result.stderr


def test_version_and_a_quick_help() -> None:
    version = pagedrag("--version")
    assert version.returncode == 0 and version.stdout.strip() == "pagedrag 0.1.0"
    # Nothing heavy is imported to parse the command line: torch and transformers wait
    # until a command runs (a timed test would flake; the imports are what make it slow).
    code = (
        "import sys; from api.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'transformers', 'sqlalchemy', 'fastapi') "
        "if m in sys.modules))"
    )
    imported = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True
    )
    assert imported.stdout.strip() == "[]", imported.stderr


def test_generate_with_a_missing_path(tmp_path: Path) -> None:
    result = pagedrag("generate", "--model", str(tmp_path / "nope.gguf"), "hi", home=tmp_path)
    assert_one_line_error(result, "no such file or directory")


def test_generate_with_an_unknown_model(tmp_path: Path) -> None:
    result = pagedrag("generate", "--model", "llama9:1t", "hi", home=tmp_path)
    assert_one_line_error(result, "unknown model 'llama9:1t'; known models:")


def test_generate_with_an_unsupported_directory(tmp_path: Path) -> None:
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text('{"model_type": "bert"}')
    result = pagedrag("generate", "--model", str(tmp_path / "bert"), "hi", home=tmp_path)
    assert_one_line_error(result, "'bert'")


def test_generate_with_a_corrupt_gguf(tmp_path: Path) -> None:
    (tmp_path / "random.gguf").write_bytes(bytes(range(256)) * 64)
    result = pagedrag("generate", "--model", str(tmp_path / "random.gguf"), "hi", home=tmp_path)
    assert_one_line_error(result, "is not a valid GGUF file")


def test_generate_with_a_model_folder_without_a_tokenizer(tmp_path: Path) -> None:
    model = save_tiny_llama(tmp_path / "no-tokenizer", tokenizer=False)
    result = pagedrag("generate", "--model", str(model), "hi", home=tmp_path)
    assert_one_line_error(result, f"{model} has no tokenizer")
    assert "tokenizer.save_pretrained()" in result.stderr


def test_generate_with_a_corrupt_tokenizer(tmp_path: Path) -> None:
    model = save_tiny_llama(tmp_path / "bad-tokenizer")
    (model / "tokenizer.json").write_text("{")
    result = pagedrag("generate", "--model", str(model), "hi", home=tmp_path)
    assert_one_line_error(result, f"the tokenizer in {model} is corrupt")


def test_generate_with_a_config_missing_required_keys(tmp_path: Path) -> None:
    model = save_tiny_llama(tmp_path / "terse")
    config = json.loads((model / "config.json").read_text())
    del config["hidden_size"], config["vocab_size"]
    (model / "config.json").write_text(json.dumps(config))
    result = pagedrag("generate", "--model", str(model), "hi", home=tmp_path)
    assert_one_line_error(result, f"{model / 'config.json'} lacks vocab_size, hidden_size")


def test_generate_with_no_kv_cache_memory(tmp_path: Path) -> None:
    result = pagedrag("generate", "--kv-cache-memory", "0", "hi", home=tmp_path)
    assert_one_line_error(result, "kv_cache_memory must be a positive number of bytes, got 0")


def test_generate_with_a_kv_cache_too_small_for_two_blocks(tmp_path: Path) -> None:
    model = save_tiny_llama(tmp_path / "tiny")
    result = pagedrag(
        "generate", "--model", str(model), "--kv-cache-memory", "1K", "hi", home=tmp_path
    )
    assert_one_line_error(result, "kv_cache_memory 1,024 bytes holds 0 KV blocks of 16 tokens")
    assert "--kv-cache-memory 512M" in result.stderr


def test_generate_with_an_unknown_quantization_lists_the_methods(tmp_path: Path) -> None:
    result = pagedrag("generate", "--quantization", "int3", "hi", home=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--quantization: invalid choice: 'int3'" in result.stderr


def test_ask_with_a_bad_int4_group_size(tmp_path: Path) -> None:
    result = pagedrag(
        "ask", "--quantization", "int4", "--quantization-group-size", "24", "why?", home=tmp_path
    )
    assert_one_line_error(result, "quantization_group_size must be a multiple of 16")


def test_generate_quantized_int4_writes_its_weights_once(tmp_path: Path) -> None:
    model = save_tiny_llama(tmp_path / "tiny")
    args = ("generate", "--model", str(model), "--quantization", "int4", "--max-tokens", "4")
    first = pagedrag(*args, "hi", home=tmp_path / "home")
    assert first.returncode == 0, first.stderr
    (saved,) = (tmp_path / "home" / "models" / "quantized").glob("tiny-*/int4-g32.safetensors")
    written = saved.stat().st_mtime_ns
    second = pagedrag(*args, "hi", home=tmp_path / "home")
    assert second.returncode == 0 and second.stdout == first.stdout
    assert saved.stat().st_mtime_ns == written


def test_run_drops_old_turns_and_survives_a_message_too_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A 128-token context: the third turn no longer fits beside the first two.
    model = save_tiny_llama(tmp_path / "tiny", max_position_embeddings=128)
    turn = "Tell me about the rivers of Europe, the Rhine and the Danube in particular."
    lines = [turn, turn, turn, turn, "word " * 300, "And the Rhone?", "/bye"]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines) + "\n"))
    argv = ["run", str(model), "--max-tokens", "8", "--dtype", "float32"]
    assert main([*argv, "--kv-cache-memory", "1M"]) == 0
    out, err = capsys.readouterr()
    assert out.count(">>> ") == len(lines)
    assert err.count("the oldest turns are dropped") == 1  # said once, though trimmed often
    [too_long] = [line for line in err.splitlines() if line.startswith("pagedrag: error:")]
    assert "the prompt has" in too_long and too_long.endswith("send a shorter message")
    assert "Traceback" not in err


def test_models_on_an_empty_store_says_how_to_pull(tmp_path: Path) -> None:
    result = pagedrag("models", home=tmp_path)
    assert result.returncode == 0
    assert "pagedrag pull qwen2.5-coder:1.5b-instruct" in result.stdout


def test_models_prints_an_aligned_table(tmp_path: Path) -> None:
    smollm2 = install_fake(tmp_path, "smollm2:135m-instruct", "llama", 269_000_000)
    qwen = install_fake(tmp_path, "qwen2.5-coder:0.5b-instruct", "qwen2", 988_000)
    result = pagedrag("models", home=tmp_path)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["NAME", "ARCH", "SIZE", "PATH"]
    assert rows[0].split() == ["qwen2.5-coder:0.5b-instruct", "qwen2", "988.1", "KB", str(qwen)]
    assert rows[1].split() == ["smollm2:135m-instruct", "llama", "269.0", "MB", str(smollm2)]
    for column in ("ARCH", "SIZE", "PATH"):
        start = header.index(column)
        assert all(row[start - 2 : start] == "  " and row[start] != " " for row in rows)


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
        "--model",
        "smollm2",  # the README's --model, with the tag left to the library
        "--max-tokens",
        "12",
        stdin="What is the capital of France?\nAnd of Italy?\n/bye\n",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(">>> ") == 3
    assert "Paris" in result.stdout and "Rome" in result.stdout
    assert "Chatting with smollm2:135m-instruct." in result.stderr  # not the store's folder


def test_run_with_two_different_models_is_refused() -> None:
    result = pagedrag("run", "smollm2", "--model", "qwen2.5-coder")
    assert_one_line_error(result, "name the model once")


def test_a_port_left_in_time_wait_is_free_to_serve_again() -> None:
    """Right after `kill -9`, the old server's connections hold its port in TIME_WAIT."""
    from api.cli.serve import _check_port_free

    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            connection, _ = server.accept()
            connection.close()  # the server's side closes first: its end waits in TIME_WAIT
            client.recv(1)
    _check_port_free("127.0.0.1", port)  # no SystemExit


@pytest.mark.slow
def test_run_slash_commands_are_never_sent_to_the_model() -> None:
    lines = [
        "/?",
        "/show",
        "/set parameter temperature 0.5",
        "/set parameter top_p 7",
        "/set system Answer in French.",
        "/clear",
        "/nonsense",
        "/bye",
    ]
    result = pagedrag("run", "smollm2", stdin="\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "/set parameter NAME VALUE" in out and "/clear" in out  # the help
    assert "model           smollm2:135m-instruct" in out and "context length" in out
    assert "Set temperature to 0.5." in out
    assert "Not set: top_p must be in (0, 1], got 7.0" in out
    assert "Set the system message." in out and "Cleared the conversation." in out
    assert "Unknown command '/nonsense'. Type /? for help." in out
    assert out.count(">>> ") == len(lines)  # a prompt for each: no reply came between


class Session:
    """`pagedrag run` on a pipe, its output read as it comes, for signals mid-answer."""

    def __init__(self, *args: str) -> None:
        code = "import sys; from api.cli import main; sys.exit(main(sys.argv[1:]))"
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, "run", *args],
            cwd=ROOT,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.output = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        while chunk := self.process.stdout.read1(4096):
            self.output += chunk

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def wait_for(self, count: int, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.output.decode(errors="replace").count(text) < count:
            assert time.monotonic() < deadline, self.output
            assert self.process.poll() is None, self.process.stderr.read()  # type: ignore[union-attr]
            time.sleep(0.05)


@pytest.mark.slow
def test_ctrl_c_stops_the_answer_and_a_second_one_at_the_prompt_leaves() -> None:
    session = Session("smollm2", "--max-tokens", "2000")
    try:
        session.wait_for(1, ">>> ")
        session.send("Count from 1 to 500, one number per line.")
        session.wait_for(1, "\n3")  # the answer is under way
        session.process.send_signal(signal.SIGINT)
        session.wait_for(2, ">>> ")  # back at the prompt, long before 500
        stopped_at = len(session.output)
        session.send("/show")
        session.wait_for(1, "context length")
        session.wait_for(3, ">>> ")
        session.process.send_signal(signal.SIGINT)  # at the prompt: a hint, still running
        session.wait_for(1, "Ctrl-C again")
        session.process.send_signal(signal.SIGINT)
        assert session.process.wait(timeout=30) == 0
    finally:
        if session.process.poll() is None:
            session.process.kill()
    answer = session.output[:stopped_at].decode()
    assert "500" not in answer


def test_a_reasoning_models_thought_is_set_apart_as_ollama_run_shows_it(tmp_path: Path) -> None:
    model = save_thinking_model(tmp_path / "thinker")
    shown = pagedrag("generate", "--model", str(model), "Capital of France?", home=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == f"Thinking...\n{THOUGHT}\n...done thinking.\n\n{ANSWER}\n"
    hidden = pagedrag(
        "generate", "--model", str(model), "--hidethinking", "Capital?", home=tmp_path
    )
    assert hidden.stdout == f"{ANSWER}\n"
    chat = pagedrag("run", str(model), home=tmp_path, stdin="Capital?\n/bye\n")
    assert chat.returncode == 0, chat.stderr
    assert f"Thinking...\n{THOUGHT}\n...done thinking.\n\n{ANSWER}" in chat.stdout
