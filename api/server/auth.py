"""API keys: who may read, who may change the library, checked before any route runs.

Clients send `Authorization: Bearer <key>`, as the OpenAI and Ollama clients do for
hosted services. A key has a role: `read` (list, search, ask, chat, generate), `write`
(also ingest, delete, re-index) or `admin` (everything, `/metrics` included). With no
key configured the server runs open, and the CLI then listens on loopback only.
Open to everyone: `/health` and the web page's own files. The page asks for a key
once and trades it at `POST /auth/session` for an HttpOnly, SameSite=Strict cookie, so
its event streams, PDF views and downloads carry it too (and no other site's page can).
Keys are kept as SHA-256 digests and compared in constant time.
"""

import hashlib
import hmac
from dataclasses import dataclass
from enum import IntEnum
from http.cookies import SimpleCookie
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from api.server.errors import error_body
from indexer.store import DEFAULT_TENANT

SESSION_COOKIE = "pagedrag_key"  # the web page's key, set by POST /auth/session
OPEN_PATHS = ("/health", "/", "/favicon.ico", "/auth/session")
OPEN_PREFIXES = ("/static/", "/vendor/")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN_TENANT = DEFAULT_TENANT  # `--api-key`'s, an open server's and the command line's

# Routes that change the library (beyond reading it) whatever their method's look.
WRITE_PREFIXES = ("/ingest", "/documents", "/reindex")
# Routes that change the model store: every tenant's models.
ADMIN_PATHS = ("/api/pull", "/api/copy", "/api/delete")


class Role(IntEnum):
    READ = 1
    WRITE = 2
    ADMIN = 3


@dataclass(frozen=True)
class ApiKey:
    digest: str  # sha256 of the key, hex
    tenant: str  # whose key it is (named in the log, never in responses)
    role: Role


@dataclass(frozen=True)
class AuthPolicy:
    """The keys the server accepts; none: it runs open."""

    keys: tuple[ApiKey, ...] = ()
    public_metrics: bool = False  # /metrics without a key (for a scraper on the host)

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def lookup(self, token: str) -> ApiKey | None:
        """The key `token` is, compared in constant time against every digest."""
        digest = _digest(token)
        found = None
        for key in self.keys:
            if hmac.compare_digest(key.digest, digest):
                found = key
        return found

    @classmethod
    def from_keys(
        cls,
        admin_keys: tuple[str, ...] = (),
        keys_file: Path | None = None,
        *,
        public_metrics: bool = False,
    ) -> "AuthPolicy":
        """`--api-key` values (admin keys of the tenant `default`) and a keys file."""
        keys = [ApiKey(_digest(k), OPEN_TENANT, Role.ADMIN) for k in admin_keys if k]
        if keys_file is not None:
            keys += read_keys_file(keys_file)
        return cls(tuple(keys), public_metrics)


def read_keys_file(path: Path) -> list[ApiKey]:
    """`KEY TENANT ROLE` a line (role read, write or admin); `#` starts a comment.

    Raises:
        ValueError: a line that is not three fields or names an unknown role, with its
            line number (never the key).
    """
    keys = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 3 or fields[2].upper() not in Role.__members__:
            raise ValueError(
                f"{path}, line {number}: expected 'KEY TENANT ROLE' with role read, write or admin"
            )
        keys.append(ApiKey(_digest(fields[0]), fields[1], Role[fields[2].upper()]))
    return keys


def required_role(method: str, path: str) -> Role | None:
    """The role a request needs; None: open to anyone."""
    if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
        return None
    if path == "/metrics" or path in ADMIN_PATHS:
        return Role.ADMIN
    if method not in READ_METHODS and path.startswith(WRITE_PREFIXES):
        return Role.WRITE
    return Role.READ


class AuthMiddleware:
    """401 without a known key, 403 with one whose role is too low."""

    def __init__(self, app: ASGIApp, policy: AuthPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.policy.enabled:
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        needed = required_role(scope["method"], path)
        if needed is Role.ADMIN and path == "/metrics" and self.policy.public_metrics:
            needed = None
        if needed is None:
            await self.app(scope, receive, send)
            return
        key = self.policy.lookup(_bearer(scope))
        if key is None:
            message = "an API key is required: send 'Authorization: Bearer <key>'"
            await _refuse(path, 401, message)(scope, receive, send)
        elif key.role < needed:
            message = f"this key may only {key.role.name.lower()}; this needs {needed.name.lower()}"
            await _refuse(path, 403, message)(scope, receive, send)
        else:
            scope.setdefault("state", {})["api_key"] = key
            await self.app(scope, receive, send)


def owner_of(request: Request) -> str:
    """The tenant whose data the request may see and change: its key's, or on a server
    without keys OPEN_TENANT, the tenant of `--api-key`'s keys, so that turning keys on
    later keeps what was stored."""
    return tenant_of(request) or OPEN_TENANT


def tenant_of(request: Request) -> str | None:
    """The tenant whose key the request carries; None on a server without keys.

    NOTE: the prefix cache is salted with it, so one tenant's prompts never warm
    another's cache (a cache hit would tell them what someone else asked).
    """
    key = getattr(request.state, "api_key", None)
    return key.tenant if isinstance(key, ApiKey) else None


def _bearer(scope: Scope) -> str:
    """The request's key: its `Authorization: Bearer` header, else the page's cookie."""
    cookie = ""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
        if name == b"cookie":
            jar = SimpleCookie(value.decode("latin-1"))
            cookie = jar[SESSION_COOKIE].value if SESSION_COOKIE in jar else ""
    return cookie


def _refuse(path: str, status: int, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(error_body(path, status, message), status_code=status, headers=headers)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
