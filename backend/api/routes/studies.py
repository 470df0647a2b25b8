"""/studies: create, list, read, cancel, extend, delete, import, export, analysis, landscape, compare."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, Response, status
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from backend.analysis import AnalysisReport
from backend.api.comparison_schemas import Compare
from backend.api.deps import (
    ReaderDep,
    SessionDep,
    SettingsDep,
    StudyId,
    StudyOwnerDep,
    WriterDep,
    require_reader,
)
from backend.api.redaction import public_rows, public_runs_page
from backend.api.responses import NOT_MODIFIED, cached_json_response
from backend.api.schemas import (
    READ_ERRORS,
    UPLOAD_ERRORS,
    WRITE_ERRORS,
    CancelOut,
    DeleteOut,
    ErrorOut,
    ExtendIn,
    ExtendOut,
    Landscape,
    PlanOut,
    RunList,
    StudyList,
    StudyOut,
    VariantList,
)
from backend.run_states import RUN_KINDS, RUN_STATUSES, STUDY_STATUSES
from backend.services import (
    analysis_views,
    queries,
    results_files,
    run_views,
    scan_export,
    study_actions,
    study_creation,
    study_extension,
    study_views,
)
from backend.services.errors import FieldError
from backend.spec import StudySpec

# Every route reads as someone (PRUNESCAPE_AUTH=all: a token holder); writes also need a writer.
router = APIRouter(
    prefix="/studies", tags=["studies"], responses=READ_ERRORS, dependencies=[Depends(require_reader)]
)

Metric = Literal["top1", "top5"]
OFFSET_MAX = 2**31 - 1  # larger offsets name no row and overflow the databases' OFFSET
FILTER_MAX_LENGTH = 200  # the study list's text filter `q`
StudyStatus = Literal[STUDY_STATUSES]  # type: ignore[valid-type]
RunStatus = Literal[RUN_STATUSES]  # type: ignore[valid-type]
RunKind = Literal[RUN_KINDS]  # type: ignore[valid-type]
Sort = Literal[tuple(study_views.SORTS)]  # type: ignore[valid-type]
RunSort = Literal[tuple(run_views.RUN_SORTS)]  # type: ignore[valid-type]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=StudyOut, responses=WRITE_ERRORS)
def create_study(spec: StudySpec, session: SessionDep, settings: SettingsDep, writer: WriterDep) -> Any:
    study = study_creation.create_study(session, spec, settings, created_by=writer)
    return study_views.study_view(session, study, detail=True)


@router.post("/plan", response_model=PlanOut)
def plan_study(spec: StudySpec, settings: SettingsDep) -> Any:
    """A dry run of POST /studies: the same validation and limits, the runs it would plan; nothing
    is stored, so it is open like the reads (with PRUNESCAPE_AUTH=all, to token holders)."""
    return study_creation.plan_preview(spec, settings)


@router.get("", response_model=StudyList)
def list_studies(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=OFFSET_MAX)] = 0,
    status: StudyStatus | None = None,
    sort: Sort = "-created_at",
    q: Annotated[
        str | None,
        Query(
            max_length=FILTER_MAX_LENGTH,
            description="words that must each appear in the name, model, dataset, creator, kind or a "
            "variant name (case-insensitive, literal characters)",
        ),
    ] = None,
) -> Any:
    result = study_views.list_studies(session, limit=limit, offset=offset, status=status, sort=sort, q=q)
    session.commit()  # statuses refreshed on read
    return result


MULTIPART_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "results CSV"},
                        "name": {"type": "string", "maxLength": 200},
                        "base": {"type": "string", "maxLength": 64, "default": "base"},
                    },
                }
            }
        },
    }
}


@router.post(
    "/import",
    status_code=status.HTTP_201_CREATED,
    response_model=StudyOut,
    openapi_extra=MULTIPART_SCHEMA,
    responses=UPLOAD_ERRORS,
)
async def import_study(
    request: Request, session: SessionDep, settings: SettingsDep, writer: WriterDep
) -> Any:
    """Reads the upload on the event loop (refused early by size and by line count) and parses and
    stores it in the thread pool, so other requests go on meanwhile (a 19 MB file used to hold
    every request for 4 s)."""
    max_lines = settings.max_runs_per_study + IMPORT_SPARE_LINES
    body = await _read_limited(request, settings.max_upload_bytes, max_lines=max_lines)
    request._body = body  # noqa: SLF001 - lets Starlette parse the form from the bytes we read
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise FieldError(["body"], "send multipart/form-data with a 'file' field holding the CSV")
    form = await request.form(max_part_size=settings.max_upload_bytes + 1)
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise FieldError(["body", "file"], "the 'file' field (a CSV upload) is required")
    data = await upload.read()
    if len(data) > settings.max_upload_bytes:
        raise HTTPException(413, f"file is larger than the limit of {settings.max_upload_bytes} bytes")
    name = form.get("name")
    base = form.get("base") or "base"
    if not isinstance(name, str | None) or not isinstance(base, str):
        raise FieldError(["body", "name"], "name and base are text fields")

    def store() -> Any:
        study = results_files.import_csv(
            session,
            data,
            name=name,
            filename=upload.filename,
            base=base.strip(),
            created_by=writer,
            max_runs=settings.max_runs_per_study,
        )
        return study_views.study_view(session, study, detail=True)

    return await run_in_threadpool(store)


# Rows are at most lines - 1 (the header); blank lines and quoted line breaks make a few more lines.
IMPORT_SPARE_LINES = 1000


async def _read_limited(request: Request, limit: int, *, max_lines: int | None = None) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed `limit` bytes (+ room
    for the multipart envelope): from Content-Length before reading, else while reading; and with
    422 as soon as it holds more than `max_lines` lines (a results file of more rows than a study
    may hold is refused while it streams, before anything parses it)."""
    envelope = 64 * 1024
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit + envelope:
        raise HTTPException(413, f"upload of {length} bytes is larger than the limit of {limit} bytes")
    chunks, size, lines = [], 0, 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit + envelope:
            raise HTTPException(413, f"upload is larger than the limit of {limit} bytes")
        lines += chunk.count(b"\n")
        if max_lines is not None and lines > max_lines:
            raise FieldError(
                ["body", "file"],
                f"the file has more than {max_lines} lines, more rows than the limit of "
                f"{max_lines - IMPORT_SPARE_LINES} runs per study allows; split it",
            )
        chunks.append(chunk)
    return b"".join(chunks)


@router.get("/{study_id}", response_model=StudyOut)
def get_study(study_id: StudyId, session: SessionDep) -> Any:
    body = study_views.study_json(session, study_id)  # statuses refreshed (and committed) on read
    session.close()  # give the connection back from this thread (see deps.get_db)
    return Response(body, media_type="application/json")


@router.post("/{study_id}/cancel", response_model=CancelOut, responses=WRITE_ERRORS)
def cancel_study(study_id: StudyId, session: SessionDep, _owner: StudyOwnerDep) -> Any:
    return study_actions.cancel_study(session, study_id)


@router.post("/{study_id}/extend", response_model=ExtendOut, responses=WRITE_ERRORS)
def extend_study(
    study_id: StudyId,
    session: SessionDep,
    settings: SettingsDep,
    _owner: StudyOwnerDep,
    body: Annotated[ExtendIn | None, Body()] = None,
) -> Any:
    body = body or ExtendIn()
    return study_extension.extend_study(session, study_id, settings, **body.model_dump())


@router.delete(
    "/{study_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        **WRITE_ERRORS,
        202: {"model": DeleteOut, "description": "runs were still running: the study is `deleting`"},
    },
)
def delete_study(
    study_id: StudyId, session: SessionDep, settings: SettingsDep, _owner: StudyOwnerDep
) -> Response:
    """Cancels every run first. 204: deleted. 202: some runs were running; the study is marked
    `deleting` and goes (rows and files) when they have stopped, at their next epoch."""
    outcome = study_actions.delete_study(session, study_id, settings)
    if outcome["deleted"]:
        return Response(status_code=204)
    return JSONResponse(DeleteOut(**outcome).model_dump(), status_code=202)


@router.get("/{study_id}/runs", response_model=RunList)
def list_runs(
    study_id: StudyId,
    session: SessionDep,
    reader: ReaderDep,
    variant: Annotated[str | None, Query(max_length=64)] = None,
    status: RunStatus | None = None,
    kind: RunKind | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=OFFSET_MAX)] = 0,
    sort: Annotated[
        RunSort,
        Query(description="id, or an accuracy (top1 / top5; '-' first: best first), runs without one last"),
    ] = "id",
) -> Any:
    page = run_views.runs_page_json(
        session, study_id, limit=limit, offset=offset, variant=variant, status=status, kind=kind, sort=sort
    )
    session.close()  # give the connection back from this thread (see deps.get_db)
    return Response(page if reader.sees_details else public_runs_page(page), media_type="application/json")


@router.get(
    "/{study_id}/analysis",
    response_model=AnalysisReport,
    responses={409: {"model": ErrorOut, "description": "the study has no finished runs yet"}, **NOT_MODIFIED},
)
def analysis(request: Request, study_id: StudyId, session: SessionDep, metric: Metric = "top1") -> Any:
    body = analysis_views.analysis_json(session, study_id, metric=metric)
    session.close()  # give the connection back from this thread (see deps.get_db)
    return cached_json_response(request, body)


@router.get("/{study_id}/landscape", response_model=Landscape, responses=NOT_MODIFIED)
def landscape(
    request: Request,
    study_id: StudyId,
    session: SessionDep,
    variant: Annotated[str, Query(min_length=1, max_length=64)] = "base",
    metric: Metric = "top1",
) -> Any:
    body = analysis_views.landscape_json(session, study_id, variant, metric=metric)
    session.close()  # give the connection back from this thread (see deps.get_db)
    return cached_json_response(request, body)


@router.get("/{study_id}/compare", response_model=Compare)
def compare(study_id: StudyId, session: SessionDep) -> Any:
    return analysis_views.compare(session, study_id)


@router.get("/{study_id}/variants", response_model=VariantList)
def variants(study_id: StudyId, session: SessionDep) -> Any:
    return analysis_views.variants_view(session, study_id)


@router.get(
    "/{study_id}/scans.csv",
    responses={
        200: {"content": {"text/csv": {}}, "description": "one row per scan evaluation"},
        404: {"model": ErrorOut, "description": "unknown study, or its spec asks for no scans"},
    },
    response_model=None,
)
def scans_csv(study_id: StudyId, session: SessionDep) -> Any:
    """The study's sensitivity scans as CSV (columns in docs/api.md); the JSON is in /variants."""
    rows = scan_export.scan_rows(session, study_id)
    return PlainTextResponse(
        scan_export.rows_to_csv(rows),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="study-{study_id}-scans.csv"'},
    )


@router.get(
    "/{study_id}/export",
    responses={200: {"content": {"text/csv": {}, "application/json": {}}}},
    response_model=None,
)
def export(
    study_id: StudyId,
    session: SessionDep,
    reader: ReaderDep,
    format: Literal["csv", "json"] = "csv",  # noqa: A002
) -> Any:
    rows = results_files.export_rows(session, study_id)
    rows = rows if reader.sees_details else public_rows(rows)
    if format == "json":
        study = queries.get_study(session, study_id)
        return {"study": {"id": study.id, "name": study.name, "kind": study.kind}, "rows": rows}
    return PlainTextResponse(
        results_files.rows_to_csv(rows),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="study-{study_id}.csv"'},
    )
