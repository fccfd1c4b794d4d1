"""The web page at `/`: its static files, the pdf.js build, and starter questions.

pdf.js comes from `node_modules/pdfjs-dist` (installed by `npm ci` from the registry,
never committed); without it the page still works and shows PDFs as their passages.
"""

import asyncio
import mimetypes
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles

from api.server.deps import IndexDep, TenantDep
from api.server.suggestions import starter_questions
from api.server.wire.errors import errors
from api.server.wire.native import Suggestions

WEB_DIR = Path(__file__).resolve().parents[1] / "web"
PDFJS_DIR = Path(__file__).resolve().parents[3] / "node_modules" / "pdfjs-dist"
OPENING_PASSAGES = 4  # the first chunks a document's starter questions are drawn from

router = APIRouter(tags=["web"])
mimetypes.add_type("text/javascript", ".mjs")  # pdf.js ships ES modules as .mjs


@router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
async def home(request: Request) -> Response:
    """The page for a browser; for an API client (no `text/html` in `Accept`), Ollama's
    own answer, which Ollama clients probe to find a server."""
    if "text/html" not in request.headers.get("accept", ""):
        return PlainTextResponse("Ollama is running")
    return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/documents/{document_id}/suggestions", responses=errors(404, 422))
async def suggestions(document_id: int, index: IndexDep, tenant: TenantDep) -> Suggestions:
    """Starter questions for one document, drawn from its title and first passages."""
    info = await asyncio.to_thread(index.document, document_id, tenant=tenant)
    hits = await asyncio.to_thread(
        index.search, info.title, OPENING_PASSAGES * 4, "hybrid",
        document_ids=[document_id], tenant=tenant,
    )  # fmt: skip
    opening = sorted(hits, key=lambda hit: hit.char_start)[:OPENING_PASSAGES]
    return Suggestions(questions=starter_questions(info.title, [hit.text for hit in opening]))


def install(app: FastAPI) -> None:
    """Serve the page's assets at /static and pdf.js (when installed) at /vendor/pdfjs."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="web")
    if PDFJS_DIR.is_dir():
        app.mount("/vendor/pdfjs", StaticFiles(directory=PDFJS_DIR), name="pdfjs")
