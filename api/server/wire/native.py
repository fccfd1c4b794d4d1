"""PagedRAG's own routes: answers with citations, documents, ingestion jobs, health."""

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from api.server.conversations import Conversation
from api.server.jobs import IngestJob
from indexer.records import DocumentInfo, DocumentText, IngestReport
from rag.answer import Answer, Attribution, Citation, Timings, Usage

_FROM_LIBRARY = ConfigDict(from_attributes=True)  # built from the library's dataclasses


class CitationOut(BaseModel):
    """A passage the model was given, numbered as the prompt numbered it ([n])."""

    model_config = _FROM_LIBRARY
    n: int
    document_id: int
    title: str
    page: int | None = Field(description="1-based page in the original file; null if pageless")
    chunk_id: int
    text: str
    score: float = Field(description="the retriever's score (RRF, cosine or BM25)")
    char_start: int = Field(description="where `text` starts in the document's text")
    char_end: int
    metadata: dict[str, object]

    @classmethod
    def of(cls, citation: Citation) -> "CitationOut":
        return cls.model_validate(citation)


class AttributionOut(BaseModel):
    """A sentence the model left uncited (answer[start:end]) and the passage behind it."""

    model_config = _FROM_LIBRARY
    start: int
    end: int = Field(description="where a client shows the marker [n]")
    n: int
    share: float = Field(description="of the sentence's terms found in passage n")


class UsageOut(BaseModel):
    model_config = _FROM_LIBRARY
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = Field(
        description="prompt tokens whose KV came from the prefix or the passage cache"
    )
    passage_tokens: int = Field(
        0, description="of cached_tokens, those copied from passages cached at another position"
    )
    reused_passages: int = Field(0, description="how many passages those came from")


class TimingsOut(BaseModel):
    """Milliseconds from the moment the question arrived."""

    rewrite_ms: float
    retrieve_ms: float
    ttft_ms: float | None = Field(description="null when the model was not called")
    total_ms: float

    @classmethod
    def of(cls, timings: Timings) -> "TimingsOut":
        ttft = None if timings.ttft_ms is None else round(timings.ttft_ms, 2)
        return cls(
            rewrite_ms=round(timings.rewrite_ms, 2),
            retrieve_ms=round(timings.retrieve_ms, 2),
            ttft_ms=ttft,
            total_ms=round(timings.total_ms, 2),
        )


class AskResponse(BaseModel):
    question: str
    standalone_question: str = Field(description="what was retrieved for (after a rewrite)")
    answer: str
    found: bool = Field(description="false: nothing relevant, or an unsupported answer")
    citations: list[CitationOut]
    cited: list[int] = Field(description="the [n] the answer refers to, in order")
    attributions: list[AttributionOut]
    finish_reason: str | None
    usage: UsageOut
    timings: TimingsOut

    @classmethod
    def of(cls, answer: Answer) -> "AskResponse":
        return cls(
            question=answer.question,
            standalone_question=answer.standalone_question,
            answer=answer.answer,
            found=answer.found,
            citations=citations(answer.citations),
            cited=answer.cited,
            attributions=attributions(answer.attributions),
            finish_reason=answer.finish_reason,
            usage=usage(answer.usage),
            timings=TimingsOut.of(answer.timings),
        )


class DocumentOut(BaseModel):
    model_config = _FROM_LIBRARY
    id: int
    collection: str
    title: str
    source_name: str
    mime_type: str
    sha256: str
    size_bytes: int
    page_count: int | None
    created_at: str
    status: str = Field(description="pending, ready or failed")
    error: str | None
    metadata: dict[str, object]
    num_chunks: int
    has_file: bool
    file_url: str | None = Field(description="the original file, when one was uploaded")

    @classmethod
    def of(cls, info: DocumentInfo) -> "DocumentOut":
        file_url = f"/documents/{info.id}/file" if info.has_file else None
        fields = {name: getattr(info, name) for name in DocumentInfo.__dataclass_fields__}
        return cls(**fields | {"created_at": info.created_at.isoformat(), "file_url": file_url})


class PageRange(BaseModel):
    page: int
    start: int
    end: int


class DocumentTextOut(BaseModel):
    document_id: int
    text: str
    pages: list[PageRange] = Field(description="each page's [start, end) in `text`")

    @classmethod
    def of(cls, document_id: int, extracted: DocumentText) -> "DocumentTextOut":
        pages = [
            PageRange(page=number, start=start, end=end)
            for number, (start, end) in enumerate(extracted.pages, 1)
        ]
        return cls(document_id=document_id, text=extracted.text, pages=pages)


class Deleted(BaseModel):
    deleted: int


class CollectionOut(BaseModel):
    name: str
    documents: int


class IngestFailureOut(BaseModel):
    file: str
    error: str
    document_id: int | None


class IngestReportOut(BaseModel):
    new_documents: int
    duplicates: int
    pages: int
    chunks: int
    failures: list[IngestFailureOut]
    skipped_unsupported: list[str]

    @classmethod
    def of(cls, report: IngestReport) -> "IngestReportOut":
        failures = [
            IngestFailureOut(file=Path(f.source).name, error=f.error, document_id=f.document_id)
            for f in report.failures
        ]
        return cls(
            new_documents=report.new_documents,
            duplicates=report.duplicates,
            pages=report.pages,
            chunks=report.chunks,
            failures=failures,
            skipped_unsupported=[Path(p).name for p in report.skipped_unsupported],
        )


class IngestJobOut(BaseModel):
    job_id: str | None = Field(description="null when texts were ingested at once")
    status: str = Field(description="queued, running, done or failed")
    files: list[str] = []
    phase: str | None = None
    done: int = 0
    total: int = 0
    phases: list[str] = []
    document_ids: list[int]
    report: IngestReportOut | None = None
    error: str | None = None
    progress_url: str | None = None

    @classmethod
    def of(cls, job: IngestJob) -> "IngestJobOut":
        report = job.report
        return cls(
            job_id=job.id,
            status=job.status.value,
            files=job.files,
            phase=job.phase,
            done=job.done,
            total=job.total,
            phases=list(job.phases),
            document_ids=report.document_ids if report else [],
            report=IngestReportOut.of(report) if report else None,
            error=job.error,
            progress_url=f"/ingest/{job.id}",
        )


class EngineLoad(BaseModel):
    running: int
    waiting: int
    kv_blocks_used: int
    kv_blocks_total: int


class DatabaseHealth(BaseModel):
    kind: str  # "sqlite" or "postgresql"
    status: str  # "ok", or "error" when it cannot be reached
    error: str | None = None  # why, when it cannot


class RankHealth(BaseModel):
    """One process of the engine (one, unless tensor or pipeline parallel)."""

    rank: int
    node: int
    status: str  # "ok", "error" (exited, or the engine lost), "unknown" (another node's)
    pid: int | None = None  # this machine's ranks
    exitcode: int | None = None  # an exited rank's


class Health(BaseModel):
    status: str  # "ok", or "error" (HTTP 503) when the database or a rank is down
    version: str
    model: str
    embedder: str
    engine: EngineLoad
    database: DatabaseHealth
    ranks: list[RankHealth]


class Suggestions(BaseModel):
    questions: list[str]


class MessageOut(BaseModel):
    """A stored turn; an answer's details (citations, found, usage, timings) ride along."""

    model_config = ConfigDict(extra="allow")
    role: str = Field(description="user or assistant")
    content: str


class ConversationSummary(BaseModel):
    id: int
    title: str
    updated_at: str

    @classmethod
    def of(cls, conversation: Conversation) -> "ConversationSummary":
        updated = conversation.updated_at.isoformat()
        return cls(id=conversation.id, title=conversation.title, updated_at=updated)


class ConversationOut(ConversationSummary):
    messages: list[MessageOut] = Field(description="oldest first")

    @classmethod
    def of(cls, conversation: Conversation) -> "ConversationOut":
        messages = [
            MessageOut.model_validate({**m.details, "role": m.role, "content": m.content})
            for m in conversation.messages or []
        ]
        updated = conversation.updated_at.isoformat()
        return cls(
            id=conversation.id, title=conversation.title, updated_at=updated, messages=messages
        )


def citations(passages: list[Citation]) -> list[CitationOut]:
    return [CitationOut.of(c) for c in passages]


def attributions(sentences: list[Attribution]) -> list[AttributionOut]:
    return [AttributionOut.model_validate(a) for a in sentences]


def usage(counts: Usage) -> UsageOut:
    return UsageOut.model_validate(counts)
