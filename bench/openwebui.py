"""Open WebUI against PagedRAG, as a user meets it: the model list, a chat, and an answer
over the documents, in a real browser, with PagedRAG as the Ollama backend and then as
the OpenAI one.

    python -m bench.openwebui [--model NAME] [--backends ollama,openai]

Open WebUI comes from PyPI into a virtualenv of its own (`bench/work/peers/openwebui`,
installed on first use by `bench.peer_setup`); `pagedrag serve` serves data/samples; Debian's
Chromium, driven by Playwright, does what a user would and saves a screenshot of each
step under `bench/results/openwebui/<backend>/`, with `report.json` saying which steps
worked (a step that fails is reported with its error and the run goes on).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.peer_setup import PEERS, WORK_DIR, ensure_installed, summary
from bench.peers import native_dtype
from bench.server_process import free_port, serving, stop, wait_until_ready
from engine.library import DEFAULT_MODEL

RESULTS = Path(__file__).parent / "results" / "openwebui"
SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run"]
CHAT_QUESTION = "Say hello to Ada in one short sentence."
RAG_QUESTION = "How does PagedRAG share KV cache blocks between prompts?"
RAG_MODEL = "pagedrag-rag"
ANSWER_TIMEOUT_MS = 300_000  # a first answer may queue behind the chat's title
MODEL_BUTTON = "button[aria-label^='Selected model']"
SOURCES_BUTTON = re.compile(r"^\d+ Sources?$")
ANSWER_HAS_TEXT = """() => {
    const answers = document.querySelectorAll('#response-content-container');
    return answers.length > 0 && answers[answers.length - 1].innerText.trim().length > 0;
}"""


@dataclass
class Step:
    name: str
    ok: bool
    seconds: float
    screenshot: str | None = None
    error: str | None = None
    seen: str | None = None  # what the page showed that the step checked


@dataclass
class BackendRun:
    backend: str  # "ollama" or "openai"
    steps: list[Step] = field(default_factory=list)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--backends", default="ollama,openai")
    args = parser.parse_args()
    install = ensure_installed(PEERS["openwebui"])
    print(summary(install), flush=True)
    if not install.ok:
        raise SystemExit(1)
    if not CHROMIUM.exists():
        raise SystemExit(f"needs {CHROMIUM} (apt-get install chromium)")
    data_dir = WORK_DIR / "openwebui-pagedrag-data"
    log = WORK_DIR / "logs" / "openwebui-pagedrag.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    flags = ["--ingest", str(SAMPLES), "--dtype", native_dtype()]
    runs = []
    with serving(data_dir, args.model, flags, log) as host:
        for backend in args.backends.split(","):
            runs.append(drive(backend, f"http://{host}", args.model))
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {"open_webui": install.version, "model": args.model, "runs": [asdict(r) for r in runs]}
    (RESULTS / "report.json").write_text(json.dumps(report, indent=2))
    for run in runs:
        for step in run.steps:
            state = "ok" if step.ok else f"FAILED: {step.error}"
            print(f"{run.backend:7} {step.name:22} {step.seconds:6.1f} s  {state}")
    print(f"screenshots and report: {RESULTS}")


def drive(backend: str, pagedrag: str, model: str) -> BackendRun:
    """Open WebUI with PagedRAG as this backend, and the three things a user does."""
    from playwright.sync_api import sync_playwright

    run = BackendRun(backend)
    folder = RESULTS / backend
    folder.mkdir(parents=True, exist_ok=True)
    with open_webui(backend, pagedrag) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})

        def step(name: str, action: Callable[[], str | None]) -> None:
            started = time.monotonic()
            shot = folder / f"{len(run.steps) + 1:02d}-{name}.png"
            try:
                seen = action()
                ok, error = True, None
            except Exception as failure:  # reported, and the next step still runs
                seen, ok, error = None, False, f"{type(failure).__name__}: {failure}"
            page.screenshot(path=str(shot))
            run.steps.append(Step(name, ok, time.monotonic() - started, str(shot), error, seen))

        step("home", lambda: open_home(page, url))
        step("model-list", lambda: list_models(page, model))
        step("chat", lambda: ask(page, url, model, CHAT_QUESTION))
        step("rag-answer", lambda: ask(page, url, RAG_MODEL, RAG_QUESTION))
        if backend == "openai":  # Open WebUI's Ollama connection keeps only the message
            step("rag-sources", lambda: show_sources(page))
        browser.close()
    return run


@contextmanager
def open_webui(backend: str, pagedrag: str) -> Iterator[str]:
    """Open WebUI on a free port, without sign-in, offline, talking to PagedRAG only."""
    spec = PEERS["openwebui"]
    port = free_port()
    data = WORK_DIR / f"openwebui-data-{backend}"
    shutil.rmtree(data, ignore_errors=True)  # a first visit, as a new user's
    data.mkdir(parents=True)
    env = {
        **os.environ,
        "DATA_DIR": str(data),
        "WEBUI_AUTH": "False",  # one user, no sign-in page
        "WEBUI_SECRET_KEY": "bench-only",
        "ENABLE_PERSISTENT_CONFIG": "False",  # these settings, not a past run's
        "ENABLE_OLLAMA_API": str(backend == "ollama"),
        "OLLAMA_BASE_URL": pagedrag,
        "ENABLE_OPENAI_API": str(backend == "openai"),
        "OPENAI_API_BASE_URL": f"{pagedrag}/v1",
        "OPENAI_API_KEY": "unused",
        # Nothing from outside: no update checks, no embedding model download (Open
        # WebUI's own document search is not what this drives).
        "OFFLINE_MODE": "True",
        "HF_HUB_OFFLINE": "1",
        "BYPASS_EMBEDDING_AND_RETRIEVAL": "True",
        "ENABLE_VERSION_UPDATE_CHECK": "False",
        "SCARF_NO_ANALYTICS": "true",
        "DO_NOT_TRACK": "true",
        "ANONYMIZED_TELEMETRY": "false",
    }
    log = WORK_DIR / "logs" / f"openwebui-{backend}.log"
    command = [str(spec.venv / "bin" / "open-webui"), "serve", "--host", "127.0.0.1"]
    with log.open("w") as out:
        process = subprocess.Popen(
            [*command, "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    try:
        failure = wait_until_ready(process, f"127.0.0.1:{port}", "/health", 600)
        if failure is not None:
            raise SystemExit(f"open-webui {failure}; see {log}")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


def open_home(page, url: str) -> str:
    """The first visit signs the single user in; its chat socket joins only once the page
    loads with that token, so it loads again, as a returning user's would."""
    page.goto(url)
    page.wait_for_function("() => !!localStorage.token", timeout=120_000)
    page.reload()
    page.wait_for_selector("#chat-input", timeout=120_000)
    dismiss_notices(page)
    return page.title()


def list_models(page, model: str) -> str:
    """Open the model menu; the generator and pagedrag-rag must be there, the embedder not."""
    page.locator(MODEL_BUTTON).first.click()
    page.get_by_role("option").first.wait_for(timeout=30_000)
    names = "\n".join(page.get_by_role("option").all_inner_texts())
    page.keyboard.press("Escape")
    for name in (model, RAG_MODEL):
        if name not in names:
            raise AssertionError(f"{name} is not in the model list: {names!r}")
    if "all-minilm" in names:
        raise AssertionError(f"the embedder is offered as a chat model: {names!r}")
    return names


def ask(page, url: str, model: str, question: str) -> str:
    """A new chat with `model` chosen in the menu: the question, then the whole answer
    (its text, and the Stop button gone)."""
    page.goto(url)
    page.wait_for_selector("#chat-input", timeout=120_000)
    dismiss_notices(page)
    page.locator(MODEL_BUTTON).first.click()
    page.get_by_role("option").filter(has_text=model).first.click()
    page.locator("#chat-input").click()
    page.keyboard.type(question)
    page.keyboard.press("Enter")
    page.wait_for_function(ANSWER_HAS_TEXT, timeout=ANSWER_TIMEOUT_MS)
    page.locator("button[aria-label='Stop']").wait_for(state="detached", timeout=ANSWER_TIMEOUT_MS)
    return page.locator("#response-content-container").last.inner_text()


def show_sources(page) -> str:
    """Open the answer's sources: the passages PagedRAG streamed as Open WebUI citation
    events, which its OpenAI connection passes on (its Ollama one turns each NDJSON line
    into a chunk of the message alone, so an Ollama backend's answers show none)."""
    button = page.get_by_text(SOURCES_BUTTON).last
    button.wait_for(timeout=10_000)
    button.click()
    page.wait_for_timeout(1_000)  # the list unfolds
    listed = page.locator("#response-content-container").last.locator("xpath=..").inner_text()
    if "[1]" not in listed:
        raise AssertionError(f"no numbered passage among the sources: {listed!r}")
    return listed


def dismiss_notices(page) -> None:
    """Close the "what's new" pop-up a fresh Open WebUI shows once."""
    button = page.get_by_role("button", name="Okay, Let's Go!")
    if button.count():
        button.first.click()


if __name__ == "__main__":
    main()
