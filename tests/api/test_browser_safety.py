"""Pages on other sites: no DNS rebinding, no cross-site writes, CORS only where allowed."""

from dataclasses import replace

import httpx
import pytest

from api.server.browser_safety import BrowserPolicy
from tests.api.conftest import serve_in_thread

pytestmark = pytest.mark.slow
EVIL = "http://evil.example"


def test_a_foreign_host_name_is_refused(live_server) -> None:
    with live_server.client() as client:
        refused = client.get("/documents", headers={"Host": "evil.example"})
        assert client.get("/documents").status_code == 200  # 127.0.0.1:<port>
        assert client.get("/health", headers={"Host": "localhost:1234"}).status_code == 200
    assert refused.status_code == 400
    assert "evil.example" in refused.json()["error"]["message"]


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("post", "/conversations", {"json": {"title": "planted"}}),
        # a form post, which the JSON-body middleware would read as JSON
        ("post", "/conversations", {"content": b'{"title": "planted"}'}),
        ("post", "/ingest", {"files": [("files", ("a.txt", b"planted", "text/plain"))]}),
        ("delete", "/documents/1", {}),
    ],
)
def test_a_page_on_another_site_cannot_change_anything(live_server, method, path, kwargs) -> None:
    with live_server.client() as client:
        before = client.get("/documents").json()
        response = getattr(client, method)(path, headers={"Origin": EVIL}, **kwargs)
        after = client.get("/documents").json()
    assert response.status_code == 403
    assert EVIL in response.json()["error"]["message"]
    assert after == before


def test_the_servers_own_page_and_clients_without_an_origin_may_write(live_server) -> None:
    with live_server.client() as client:
        own = client.post(
            "/conversations", json={"title": "t"}, headers={"Origin": live_server.url}
        )
        plain = client.post("/conversations", json={"title": "t"})
        read = client.get("/documents", headers={"Origin": EVIL})
    assert own.status_code == plain.status_code == 201
    assert read.status_code == 200 and "access-control-allow-origin" not in read.headers


def test_allowed_origins_get_cors_headers(live_server) -> None:
    settings = replace(
        live_server.settings,
        browser=BrowserPolicy.for_address("127.0.0.1", origins=["http://localhost:3000"]),
    )
    with (
        serve_in_thread(settings, live_server.rag) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        preflight = client.options(
            "/ask",
            headers={
                "Origin": "http://localhost:3000",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        listed = client.get("/documents", headers={"Origin": "http://localhost:3000"})
        written = client.post(
            "/conversations", json={"title": "t"}, headers={"Origin": "http://localhost:3000"}
        )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert listed.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert written.status_code == 201


@pytest.mark.parametrize(
    ("bind", "host", "allowed"),
    [
        ("127.0.0.1", "127.0.0.1:8000", True),
        ("127.0.0.1", "[::1]:8000", True),
        ("127.0.0.1", "LOCALHOST", True),
        ("127.0.0.1", "192.168.1.5:8000", False),
        ("192.168.1.5", "192.168.1.5:8000", True),
        ("0.0.0.0", "0.0.0.0:8000", False),  # listening everywhere names no host
        ("127.0.0.1", "evil.example", False),
    ],
)
def test_host_names_served(bind: str, host: str, allowed: bool) -> None:
    assert BrowserPolicy.for_address(bind).allows_host(host) is allowed
