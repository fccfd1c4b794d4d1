"""What a web page on another site may do with this server: nothing, unless allowed.

A local server is reachable from any page the user's browser opens. Three doors are shut:
- **DNS rebinding**: a page on `evil.example` whose name later resolves to 127.0.0.1
  sends `Host: evil.example`; only the allowed host names are served (loopback names by
  default, `--allowed-hosts`), anything else gets 400.
- **Cross-site writes**: a browser sends simple cross-site requests (a form POST, an
  upload) without asking first, with an `Origin` header; a state-changing request from
  an origin that is neither this server's own nor allowed (`--allowed-origins`) gets 403.
  Clients that are not browsers (curl, the SDKs) send no `Origin` and are not affected.
- **Cross-site reads**: CORS headers go only to the allowed origins (none by default).
"""

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from api.server.errors import error_body

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
ANY = "*"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class BrowserPolicy:
    """Which Host names and foreign origins the server accepts."""

    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS  # "*": any (behind a trusted proxy)
    allowed_origins: tuple[str, ...] = ()  # e.g. "http://localhost:3000"; "*": any

    def allows_host(self, host: str) -> bool:
        return ANY in self.allowed_hosts or _hostname(host) in self.allowed_hosts

    def allows_origin(self, origin: str, host: str) -> bool:
        """Its own origin (the page this server serves) or an allowed one."""
        if ANY in self.allowed_origins or origin in self.allowed_origins:
            return True
        parts = urlsplit(origin)
        return bool(parts.netloc) and parts.netloc.lower() == host.lower()

    @classmethod
    def for_address(
        cls, bind_host: str, hosts: Iterable[str] = (), origins: Iterable[str] = ()
    ) -> "BrowserPolicy":
        """The loopback names, the address the server listens on, and those asked for."""
        names = [*LOOPBACK_HOSTS, *([] if bind_host in ("0.0.0.0", "::") else [bind_host])]
        return cls(tuple(dict.fromkeys([*names, *hosts])), tuple(origins))


class BrowserSafetyMiddleware:
    """Refuses foreign Host names (400) and cross-site state changes (403)."""

    def __init__(self, app: ASGIApp, policy: BrowserPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if not self.policy.allows_host(host):
            message = f"the Host {host!r} is not served here; see --allowed-hosts"
            await _refuse(scope["path"], 400, message)(scope, receive, send)
            return
        origin = headers.get("origin")
        writes = scope["method"] not in SAFE_METHODS
        if writes and origin and not self.policy.allows_origin(origin, host):
            message = f"requests from the page at {origin} are not allowed; see --allowed-origins"
            await _refuse(scope["path"], 403, message)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _refuse(path: str, status: int, message: str) -> JSONResponse:
    return JSONResponse(error_body(path, status, message), status_code=status)


def _hostname(host: str) -> str:
    """`Host` without its port: `127.0.0.1:8000` -> `127.0.0.1`, `[::1]:8000` -> `::1`."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
