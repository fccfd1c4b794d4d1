"""Documents in and out: `POST /ingest`, ingestion progress, the library, the original files."""

import asyncio
import json
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from starlette.datastructures import UploadFile

from api.server.deps import IndexDep, StateDep, TenantDep
from api.server.errors import ApiError
from api.server.jobs import UPLOADS, IngestFn, IngestJob
from api.server.schemas import IngestTextsRequest, inline_schema
from api.server.state import AppState
from api.server.streaming import sse
from api.server.wire.errors import Responses, errors
from api.server.wire.native import (
    CollectionOut,
    Deleted,
    DocumentOut,
    DocumentTextOut,
    IngestJobOut,
)
from indexer.parsers import SUPPORTED_SUFFIXES, is_supported
from indexer.records import IngestReport, Progress

router = APIRouter(tags=["documents"])
COPY_CHUNK = 1 << 20
PROGRESS_POLL_S = 0.25
ACCEPTED: Responses = {202: {"model": IngestJobOut, "description": "A background job began."}}


@router.post(
    "/ingest",
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "files": {
                                "type": "array",
                                "items": {"type": "string", "format": "binary"},
                            },
                            "collection": {"type": "string"},
                        },
                        "required": ["files"],
                    }
                },
                "application/json": {"schema": inline_schema(IngestTextsRequest)},
            }
        }
    },
    response_model=IngestJobOut,
    responses=errors(413, 415, 422) | ACCEPTED,
)
async def ingest(
    request: Request,
    state: StateDep,
    tenant: TenantDep,
    wait: bool = False,
    background: bool = False,
) -> JSONResponse:
    """Add documents: a multipart upload of files (field `files`, optional `collection`), or
    JSON `{"documents": [{"title", "text", "metadata"}], "collection"}`.

    Small uploads are ingested before the response; larger ones run as a background job
    (202) whose progress is at `GET /ingest/{job_id}` (or its `/events` stream), unless
    `?wait=true`; `?background=true` makes a job of any upload, so a client can show
    every file's progress. Each file's failure is reported in the job without failing
    the others. The collection is the key's tenant's, made on first use.
    """
    _check_length(request, state.settings.max_upload_bytes)
    if wait and background:
        raise ApiError(400, "wait=true and background=true contradict each other")
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        return await _ingest_texts(request, state, tenant)
    if not content_type.startswith("multipart/form-data"):
        raise ApiError(415, "send files as multipart/form-data or documents as JSON")
    upload_dir = state.settings.data_dir / UPLOADS / uuid.uuid4().hex
    try:
        paths, collection, size = await _save_uploads(request, upload_dir, state)
    except BaseException:  # too large, refused, or the client went away mid-upload
        shutil.rmtree(upload_dir, ignore_errors=True)
        raise
    job = state.jobs.submit(paths, upload_dir, _ingest_fn(state, collection, tenant), tenant)
    if background or (not wait and size > state.settings.background_ingest_bytes):
        return _json(IngestJobOut.of(job), status=202)
    await asyncio.to_thread(job.finished.wait)
    return _json(IngestJobOut.of(job))


@router.get(
    "/ingest/{job_id}",
    response_model=IngestJobOut,
    responses=errors(404) | {200: {"content": {"text/event-stream": {}}}},
)
async def ingest_progress(
    job_id: str, request: Request, state: StateDep, tenant: TenantDep
) -> IngestJobOut | StreamingResponse:
    """An ingestion job's state and report; with `Accept: text/event-stream`, a progress stream."""
    job = _job(state, job_id, tenant)
    if "text/event-stream" in request.headers.get("accept", ""):
        return _progress_stream(job)
    return IngestJobOut.of(job)


@router.get(
    "/ingest/{job_id}/events",
    response_class=StreamingResponse,
    responses=errors(404) | {200: {"content": {"text/event-stream": {}}}},
)
async def ingest_events(job_id: str, state: StateDep, tenant: TenantDep) -> StreamingResponse:
    """Server-sent `progress` events until the job ends with a `done` event."""
    return _progress_stream(_job(state, job_id, tenant))


@router.get("/documents", responses=errors())
async def list_documents(
    index: IndexDep, tenant: TenantDep, collection: str | None = None
) -> list[DocumentOut]:
    """The tenant's documents (or one collection's): title, pages, chunks, status, error."""
    documents = await asyncio.to_thread(index.documents, collection, tenant=tenant)
    return [DocumentOut.of(d) for d in documents]


@router.get("/documents/{document_id}", responses=errors(404, 422))
async def get_document(document_id: int, index: IndexDep, tenant: TenantDep) -> DocumentOut:
    """One document's description."""
    return DocumentOut.of(await asyncio.to_thread(index.document, document_id, tenant=tenant))


@router.get(
    "/documents/{document_id}/file",
    response_class=FileResponse,
    responses=errors(404, 422) | {200: {"content": {"application/octet-stream": {}}}},
)
async def get_document_file(document_id: int, index: IndexDep, tenant: TenantDep) -> FileResponse:
    """The original uploaded file, as it was uploaded."""
    info = await asyncio.to_thread(index.document, document_id, tenant=tenant)
    path = await asyncio.to_thread(index.original_file, document_id, tenant=tenant)
    if path is None:
        raise ApiError(404, f"document {document_id} was given as text and has no file")
    if not path.is_file():  # servers sharing a library keep the files each received
        raise ApiError(404, f"the file of document {document_id} is not kept by this server")
    return FileResponse(path, media_type=info.mime_type, filename=info.source_name)


@router.get("/documents/{document_id}/text", responses=errors(404, 422))
async def get_document_text(
    document_id: int, index: IndexDep, tenant: TenantDep
) -> DocumentTextOut:
    """The text extracted from the document (any format), with each page's character range."""
    extracted = await asyncio.to_thread(index.document_text, document_id, tenant=tenant)
    return DocumentTextOut.of(document_id, extracted)


@router.delete("/documents/{document_id}", responses=errors(404, 422))
async def delete_document(document_id: int, index: IndexDep, tenant: TenantDep) -> Deleted:
    """Remove a document from the database, every index and the file store."""
    await asyncio.to_thread(index.delete, document_id, tenant=tenant)
    return Deleted(deleted=document_id)


@router.get("/collections", responses=errors())
async def list_collections(index: IndexDep, tenant: TenantDep) -> list[CollectionOut]:
    """The tenant's collections with their document counts."""
    documents = await asyncio.to_thread(index.documents, tenant=tenant)
    names = await asyncio.to_thread(index.collections, tenant=tenant)
    return [
        CollectionOut(name=name, documents=sum(1 for d in documents if d.collection == name))
        for name in names
    ]


# -- helpers ------------------------------------------------------------------------------


def _check_length(request: Request, limit: int) -> None:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise ApiError(413, f"the upload is larger than the server's limit of {limit} bytes")


async def _ingest_texts(request: Request, state: StateDep, tenant: str) -> JSONResponse:
    try:
        body = IngestTextsRequest.model_validate(json.loads(await request.body()))
    except json.JSONDecodeError:
        raise ApiError(400, "the request body is not valid JSON") from None
    except ValueError as error:
        raise ApiError(422, str(error)) from None
    documents = [d.model_dump() for d in body.documents]
    ids = await asyncio.to_thread(
        state.index.ingest_texts, documents, body.collection, tenant=tenant
    )
    state.metrics.ingested_documents.labels("text").inc(len(ids))
    return _json(IngestJobOut(job_id=None, status="done", document_ids=ids))


async def _save_uploads(
    request: Request, upload_dir: Path, state: AppState
) -> tuple[list[Path], str | None, int]:
    """Write the uploaded files to `upload_dir`; returns paths, collection and total size."""
    limit = state.settings.max_upload_bytes
    form = await request.form(max_files=1000)
    files = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
    if not files:
        raise ApiError(400, "no files in the upload (use the form field 'files')")
    if not any(is_supported(Path(f.filename or "")) for f in files):
        supported = ", ".join(sorted(SUPPORTED_SUFFIXES))
        raise ApiError(415, f"unsupported file type; supported: {supported}")
    collection = form.get("collection")
    upload_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    size = 0
    for position, upload in enumerate(files):
        path = upload_dir / _safe_name(upload.filename, position, paths)
        with path.open("wb") as out:
            while chunk := await upload.read(COPY_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise ApiError(
                        413, f"the upload is larger than the server's limit of {limit} bytes"
                    )
                out.write(chunk)
        paths.append(path)
    return paths, collection if isinstance(collection, str) and collection else None, size


def _safe_name(filename: str | None, position: int, taken: list[Path]) -> str:
    name = (
        re.sub(r"[^\w.\- ]", "_", Path(filename or f"upload-{position}").name).strip() or "upload"
    )
    if any(p.name == name for p in taken):
        name = f"{position}-{name}"
    return name


def _ingest_fn(state: AppState, collection: str | None, tenant: str) -> IngestFn:
    def run(paths: list[Path], progress: Progress) -> IngestReport:
        return state.index.ingest_files(paths, collection, progress=progress, tenant=tenant)

    return run


def _job(state: AppState, job_id: str, tenant: str) -> IngestJob:
    job = state.jobs.get(job_id, tenant)
    if job is None:
        raise ApiError(404, f"no ingestion job {job_id!r}")
    return job


def _json(body: IngestJobOut, status: int = 200) -> JSONResponse:
    """The model as the response, with a status that depends on how the upload went."""
    return JSONResponse(body.model_dump(mode="json"), status_code=status)


def _progress_stream(job: IngestJob) -> StreamingResponse:
    async def events() -> AsyncIterator[str]:
        seen = -1
        while True:
            if job.version != seen:
                seen = job.version
                finished = job.finished.is_set()
                body = IngestJobOut.of(job).model_dump(mode="json")
                yield sse("done" if finished else "progress", body)
                if finished:
                    return
            await asyncio.sleep(PROGRESS_POLL_S)

    return StreamingResponse(events(), media_type="text/event-stream")
