"""API keys: 401 without one, 403 for a role too low, the web page's session cookie."""

import hashlib
from dataclasses import replace
from pathlib import Path

import httpx
import openai
import pytest

from api.server.auth import SESSION_COOKIE, ApiKey, AuthPolicy, Role, read_keys_file
from tests.api.conftest import serve_in_thread
from tests.api.test_cli import assert_one_line_error, pagedrag
from tests.web.conftest import CHROMIUM_ARGS

pytestmark = pytest.mark.slow
READER, WRITER, ADMIN = "reader-key-1", "writer-key-2", "admin-key-3"


def key(secret: str, role: Role, tenant: str = "team") -> ApiKey:
    return ApiKey(hashlib.sha256(secret.encode()).hexdigest(), tenant, role)


@pytest.fixture(scope="module")
def keyed_server(live_server):
    policy = AuthPolicy((key(READER, Role.READ), key(WRITER, Role.WRITE), key(ADMIN, Role.ADMIN)))
    with serve_in_thread(replace(live_server.settings, auth=policy), live_server.rag) as url:
        yield url


def call(url: str, method: str, path: str, secret: str | None = None, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    with httpx.Client(base_url=url, timeout=60) as client:
        return client.request(method, path, headers=headers, **kwargs)


def test_without_a_key_only_health_and_the_page_are_open(keyed_server) -> None:
    refused = call(keyed_server, "GET", "/documents")
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert "API key" in refused.json()["error"]["message"]
    assert call(keyed_server, "GET", "/documents", "not-a-key").status_code == 401
    assert call(keyed_server, "GET", "/health").status_code == 200
    assert call(keyed_server, "GET", "/").status_code == 200
    assert call(keyed_server, "POST", "/v1/completions", json={"prompt": "Hi"}).status_code == 401


@pytest.mark.parametrize(
    ("secret", "statuses"),
    [
        (READER, (200, 200, 403, 403)),
        (WRITER, (200, 200, 404, 403)),  # 404: past the check, no such document
        (ADMIN, (200, 200, 404, 200)),
    ],
)
def test_each_role_does_what_it_may(keyed_server, secret: str, statuses) -> None:
    asked = {"question": "How big is a KV block?", "max_tokens": 2}
    got = (
        call(keyed_server, "GET", "/documents", secret).status_code,
        call(keyed_server, "POST", "/ask", secret, json=asked).status_code,
        call(keyed_server, "DELETE", "/documents/987654", secret).status_code,
        call(keyed_server, "GET", "/metrics", secret).status_code,
    )
    assert got == statuses


def test_only_admin_keys_change_the_model_store(keyed_server) -> None:
    for method, path in (("POST", "/api/pull"), ("POST", "/api/copy"), ("DELETE", "/api/delete")):
        body = {"model": "nope", "source": "nope", "destination": "other"}
        assert call(keyed_server, method, path, WRITER, json=body).status_code == 403
        assert call(keyed_server, method, path, ADMIN, json=body).status_code == 404


def test_the_openai_client_sends_its_key_as_it_does_for_hosted_services(keyed_server) -> None:
    good = openai.OpenAI(base_url=f"{keyed_server}/v1", api_key=READER)
    assert {model.id for model in good.models.list()}
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{keyed_server}/v1", api_key="wrong").models.list()


def test_the_page_trades_a_key_for_a_cookie_no_other_site_can_use(keyed_server) -> None:
    with httpx.Client(base_url=keyed_server, timeout=60) as client:
        assert client.post("/auth/session", json={"key": "wrong"}).status_code == 401
        signed = client.post("/auth/session", json={"key": READER})
        assert signed.status_code == 204
        cookie = signed.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert client.cookies.get(SESSION_COOKIE) == READER
        assert client.get("/documents").status_code == 200  # the cookie is the key


def test_the_web_page_asks_for_a_key_once(keyed_server) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    from tests.web.conftest import CHROMIUM

    if not CHROMIUM.exists():
        pytest.skip("needs /usr/bin/chromium (make test installs it)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            asked: list[str] = []

            def answer(dialog) -> None:
                asked.append(dialog.message)
                dialog.accept(READER)

            page.on("dialog", answer)
            page.goto(keyed_server)
            page.wait_for_selector("body[data-ready=true]")
            page.reload()  # the cookie stays for the session: no second question
            page.wait_for_selector("body[data-ready=true]")
        finally:
            browser.close()
    assert len(asked) == 1 and "API key" in asked[0]


def test_a_keys_file_gives_roles_and_says_which_line_is_wrong(tmp_path: Path) -> None:
    good = tmp_path / "keys"
    good.write_text("# key tenant role\nk1 alice read\nk2 bob ADMIN  # comment\n\n")
    keys = read_keys_file(good)
    assert [(k.tenant, k.role) for k in keys] == [("alice", Role.READ), ("bob", Role.ADMIN)]
    assert AuthPolicy(tuple(keys)).lookup("k2") == keys[1]
    bad = tmp_path / "bad"
    bad.write_text("k1 alice read\nsecret-value carol owner\n")
    with pytest.raises(ValueError, match="line 2") as raised:
        read_keys_file(bad)
    assert "secret-value" not in str(raised.value)


def test_serving_beyond_loopback_needs_a_key(tmp_path: Path) -> None:
    result = pagedrag("serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path))
    assert_one_line_error(result, "--api-key")


TWO_TENANTS = AuthPolicy((key("alice-key", Role.WRITE, "alice"), key("bob-key", Role.WRITE, "bob")))
OTHER_TWO = AuthPolicy((key("carol-key", Role.WRITE, "carol"), key("dave-key", Role.WRITE, "dave")))
FERRY = "The night ferry to Bergen leaves pier 4 at nine and takes fourteen hours."


@pytest.mark.parametrize("path", ["/v1/completions", "/ask"])
def test_one_tenants_prompts_never_warm_anothers_cache(live_server, path: str) -> None:
    """A cache hit would confirm what another tenant asked, a block at a time."""
    if path == "/ask":
        body = {"question": "When does the night ferry to Bergen leave?", "max_tokens": 2}
    else:  # a prompt no other test sends, long enough to fill blocks
        body = {"prompt": "Tenant salt probe. " * 20, "max_tokens": 1}

    def cached(url: str, secret: str) -> int:
        usage = call(url, "POST", path, secret, json=body).json()["usage"]
        details = usage.get("prompt_tokens_details")
        return details["cached_tokens"] if details else usage["cached_tokens"]

    with serve_in_thread(replace(live_server.settings, auth=TWO_TENANTS), live_server.rag) as url:
        for secret in ("alice-key", "bob-key"):  # the same passage: the same prompt for both
            document = {"title": "Ferries", "text": FERRY}
            call(url, "POST", "/ingest", secret, json={"documents": [document]})
        first = cached(url, "alice-key")
        again = cached(url, "alice-key")
        other = cached(url, "bob-key")
    assert first == 0 and again > 0
    assert other == 0


def test_a_tenant_sees_asks_over_and_changes_only_its_own_library(live_server) -> None:
    """Another tenant's job, document, collection or passage is as missing as none."""
    with serve_in_thread(replace(live_server.settings, auth=OTHER_TWO), live_server.rag) as url:
        upload = {"files": ("ferry.txt", FERRY.encode()), "collection": (None, "travel")}
        job = call(url, "POST", "/ingest?background=true", "carol-key", files=upload).json()
        done = call(url, "GET", f"/ingest/{job['job_id']}/events", "carol-key").text
        carols = call(url, "GET", "/documents", "carol-key").json()
        (ferry,) = [d["id"] for d in carols]
        question = {"question": "When does the night ferry to Bergen leave?", "max_tokens": 4}
        probes = [f"/ingest/{job['job_id']}", f"/ingest/{job['job_id']}/events"] + [
            f"/documents/{ferry}{tail}" for tail in ("", "/text", "/file", "/suggestions")
        ]
        dave = {
            "probes": [call(url, "GET", path, "dave-key").status_code for path in probes],
            "documents": call(url, "GET", "/documents", "dave-key").json(),
            "collections": call(url, "GET", "/collections", "dave-key").json(),
            "ask": call(url, "POST", "/ask", "dave-key", json=question).json()["citations"],
            "by_id": call(
                url, "POST", "/ask", "dave-key", json={**question, "document_ids": [ferry]}
            ).json()["citations"],
            "by_name": call(
                url, "POST", "/ask", "dave-key", json={**question, "collection": "travel"}
            ),
            "delete": call(url, "DELETE", f"/documents/{ferry}", "dave-key").status_code,
        }
        carol_asks = call(url, "POST", "/ask", "carol-key", json=question).json()
        carol_deletes = call(url, "DELETE", f"/documents/{ferry}", "carol-key").status_code
    assert "event: done" in done and [d["collection"] for d in carols] == ["travel"]
    assert dave["probes"] == [404] * len(probes)
    # Not even the library an open server keeps (data/samples, the default tenant's).
    assert (dave["documents"], dave["collections"], dave["ask"], dave["by_id"]) == ([], [], [], [])
    assert dave["by_name"].status_code == 400
    assert "no collection named 'travel' (collections: none yet)" in dave["by_name"].text
    assert dave["delete"] == 404
    assert [c["document_id"] for c in carol_asks["citations"]] == [ferry]
    assert carol_deletes == 200


def test_a_tenants_conversations_are_its_own(live_server) -> None:
    policy = AuthPolicy((key("alice-key", Role.READ, "alice"), key("bob-key", Role.READ, "bob")))
    with serve_in_thread(replace(live_server.settings, auth=policy), live_server.rag) as url:
        chat = call(url, "POST", "/conversations", "alice-key", json={"title": "Alice's"}).json()
        path = f"/conversations/{chat['id']}"
        bobs_view = (
            call(url, "GET", "/conversations", "bob-key").json(),
            call(url, "GET", path, "bob-key").status_code,
            call(url, "DELETE", path, "bob-key").status_code,
        )
        alices_view = call(url, "GET", "/conversations", "alice-key").json()
    assert bobs_view == ([], 404, 404)
    assert [c["title"] for c in alices_view] == ["Alice's"]
