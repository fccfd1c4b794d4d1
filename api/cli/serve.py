"""`pagedrag serve`: the web page and every HTTP API over one engine and one library."""

import argparse
import asyncio
import ipaddress
import logging
import os
import signal
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from api.cli.options import (
    add_pipeline_options,
    engine_config,
    library_options,
    size_argument,
)
from api.settings import API_KEY

if TYPE_CHECKING:
    from api.server.auth import AuthPolicy
    from api.server.settings import PoolSettings

EXAMPLE_QUESTION = "How does PagedRAG share work between prompts?"


def add_parsers(subparsers: Any) -> None:
    serve = subparsers.add_parser("serve", help="serve the web page and the HTTP APIs")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument(
        "--max-upload",
        type=size_argument,
        default=100 << 20,
        metavar="BYTES",
        help="largest POST /ingest, e.g. 100M (default); larger gets 413",
    )
    serve.add_argument(
        "--ingest",
        nargs="+",
        type=Path,
        default=(),
        metavar="PATH",
        help="files or folders to ingest before serving (unchanged ones are skipped)",
    )
    serve.add_argument(
        "--allowed-hosts",
        type=_names,
        default=(),
        metavar="NAMES",
        help="more Host names to serve, comma-separated, beyond localhost and the --host "
        "address (`*`: any; for a reverse proxy that checks them)",
    )
    serve.add_argument(
        "--allowed-origins",
        type=_names,
        default=(),
        metavar="ORIGINS",
        help="web pages on other sites that may call the API (CORS), comma-separated, "
        "e.g. http://localhost:3000 (default: none)",
    )
    serve.add_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="KEY",
        help="require this key (Authorization: Bearer KEY) on every route but /health; "
        f"repeatable; also from ${API_KEY}",
    )
    serve.add_argument(
        "--api-keys-file",
        type=Path,
        metavar="FILE",
        help="keys with roles, a line each: KEY TENANT read|write|admin",
    )
    serve.add_argument("--public-metrics", action="store_true", help="serve /metrics without a key")
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="listen on a non-loopback address without any API key (anyone on the network "
        "can read and change the library)",
    )
    serve.add_argument(
        "--shutdown-timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="on SIGTERM or Ctrl-C, how long requests in flight may finish before they are "
        "aborted (default 5)",
    )
    serve.add_argument(
        "--max-loaded-models",
        type=int,
        default=3,
        metavar="N",
        help="models in memory at once, this one included (Ollama's OLLAMA_MAX_LOADED_MODELS; "
        "default 3); requests load any pulled model by name",
    )
    serve.add_argument(
        "--keep-alive",
        default="5m",
        metavar="DURATION",
        help="how long a model loaded on demand stays after its last request: seconds or "
        "a duration such as 5m (default) or 1h; negative: until the server stops",
    )
    add_pipeline_options(serve)
    serve.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    if args.shutdown_timeout < 0:
        raise SystemExit("pagedrag: error: --shutdown-timeout must not be negative")
    auth = _auth_policy(args)

    from api.server.app import create_app
    from api.server.browser_safety import BrowserPolicy
    from api.server.settings import ServerSettings

    models = _pool_settings(args)

    _check_port_free(args.host, args.port)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    library = library_options(args)
    if library.database_url is not None:  # unreachable: one line now, not a traceback later
        from indexer.store import Database

        Database(library.database_url).close()
    settings = ServerSettings(
        data_dir=library.data_dir,
        embedder=library.embedder,
        database_url=library.database_url,
        max_upload_bytes=args.max_upload,
        engine=engine_config(args),
        ingest_paths=tuple(args.ingest),
        browser=BrowserPolicy.for_address(args.host, args.allowed_hosts, args.allowed_origins),
        auth=auth,
        models=models,
    )
    url = f"http://{args.host}:{args.port}"
    lost: list[Exception] = []

    def engine_lost(error: Exception) -> None:
        """A rank is gone and its requests failed: stop serving, as after a SIGTERM."""
        lost.append(error)
        os.kill(os.getpid(), signal.SIGTERM)

    def exit_after_shutdown(signum: int, frame: object) -> None:
        raise SystemExit(f"pagedrag: error: the engine was lost: {lost[0]}" if lost else 0)

    app = create_app(
        settings,
        on_ready=lambda: _print_ready(url, auth.enabled),
        on_engine_lost=engine_lost,
    )
    # NOTE: without a graceful timeout uvicorn waits for every connection to close, and a
    # long non-streaming generation kept a SIGTERMed server alive for minutes. After it,
    # uvicorn cancels the handlers, which aborts their generations (api/server/disconnect.py),
    # and the app's shutdown closes the engine and the index.
    # NOTE: uvicorn re-raises the signal it stopped on once it is done; a SIGTERM that
    # reached a clean shutdown is then a normal exit, not a death by signal.
    signal.signal(signal.SIGTERM, exit_after_shutdown)
    logging.getLogger("uvicorn.error").addFilter(_quiet_shutdown_cancellations)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        timeout_graceful_shutdown=args.shutdown_timeout,
    )
    if lost:
        raise SystemExit(f"pagedrag: error: the engine was lost: {lost[0]}")
    return 0


def _pool_settings(args: argparse.Namespace) -> "PoolSettings":
    from api.server.keep_alive import keep_alive_seconds
    from api.server.settings import PoolSettings

    if args.max_loaded_models < 1:
        raise SystemExit("pagedrag: error: --max-loaded-models must be at least 1")
    try:
        keep_alive = keep_alive_seconds(args.keep_alive)
    except ValueError as error:
        raise SystemExit(f"pagedrag: error: --keep-alive: {error}") from None
    return PoolSettings(max_loaded=args.max_loaded_models, keep_alive=keep_alive)


def _auth_policy(args: argparse.Namespace) -> "AuthPolicy":
    """The keys asked for; without any, only a loopback address (or an explicit
    --insecure-no-auth) may be served."""
    from api.server.auth import AuthPolicy

    admin_keys = (*args.api_key, args.settings.api_key or "")
    try:
        policy = AuthPolicy.from_keys(
            tuple(admin_keys), args.api_keys_file, public_metrics=args.public_metrics
        )
    except (OSError, ValueError) as error:
        raise SystemExit(f"pagedrag: error: --api-keys-file: {error}") from None
    if not policy.enabled and not _is_loopback(args.host) and not args.insecure_no_auth:
        raise SystemExit(
            f"pagedrag: error: --host {args.host} reaches beyond this machine and no API key "
            f"is set; pass --api-key (or ${API_KEY}), or --insecure-no-auth"
        )
    return policy


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _names(value: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in value.split(",") if name.strip())


def _quiet_shutdown_cancellations(record: logging.LogRecord) -> bool:
    """A request cut off by the graceful timeout is expected: one line, not a traceback."""
    error = record.exc_info[1] if record.exc_info else None
    if isinstance(error, asyncio.CancelledError):
        record.msg = "a request still running at the end of --shutdown-timeout was aborted"
        record.args, record.exc_info, record.exc_text = (), None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
    return True


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # NOTE: bound as uvicorn binds, with SO_REUSEADDR: a port a killed server left in
        # TIME_WAIT is free to it, while one another server listens on is still taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise SystemExit(
                f"pagedrag: error: cannot listen on {host}:{port} ({error.strerror}); "
                "is another server running? Pass --port to use another one"
            ) from None


def _print_ready(url: str, keyed: bool) -> None:
    print(
        f"\nPagedRAG is serving on {url}  (open it in a browser; API docs: {url}/docs)", flush=True
    )
    if not keyed:
        print("No API key is set: anyone who can reach it can use it (see --api-key).")
    key = f' -H "Authorization: Bearer ${API_KEY}"' if keyed else ""
    print("Try:", flush=True)
    print(
        f"  curl -s {url}/ask -H 'Content-Type: application/json'{key} "
        f'-d \'{{"question": "{EXAMPLE_QUESTION}"}}\'\n',
        flush=True,
    )
