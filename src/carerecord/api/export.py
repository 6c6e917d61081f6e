"""FHIR Bulk Data export over HTTP (http://hl7.org/fhir/uv/bulkdata/STU2/export.html): the
adapter of :mod:`carerecord.services.export`.

- ``GET [base]/$export``, ``GET [base]/Patient/$export``, ``GET [base]/Group/{id}/$export``
  with ``Prefer: respond-async`` (400 without it), the parameters in the query string; or
  ``POST`` to the same with them in a Parameters body (``_outputFormat``, ``_since``, ``_type``,
  ``_typeFilter``, ``_elements``, ``includeAssociatedData``, each a
  ``valueString``/``valueInstant``/``valueCode``; ``patient``, POST only, a ``valueReference``
  each; errors name ``Parameters.parameter[n]...``): 202 with ``Content-Location`` of the job's
  status URL, ``[base]/$export-status/{job}``, and an OperationOutcome that also warns of what
  ``Prefer: handling=lenient`` had ignored (``services/export/request.py``).
- ``GET`` of the status URL: 202 with ``X-Progress`` and ``Retry-After`` while the job runs; 200
  with the manifest (``application/json``, and ``Expires``) when it is complete; 500 with an
  OperationOutcome when it failed or was interrupted. ``DELETE``: the job and its files are
  removed (202).
- ``GET [base]/$export-file/{job}/{name}``: an NDJSON file the manifest lists, streamed. The
  bearer token is required (``requiresAccessToken``).

Status, files and deletion answer only the client that started the job (same client id and
subject); anyone else gets the 404 of a job that does not exist. Every request is audited by the
audit middleware; a file's audit record is committed before its first byte is sent, and the
records of the exported patients were written by the job before the manifest listed the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import IO

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from carerecord.api import guarded
from carerecord.api.auth import principal
from carerecord.api.http import fhir_response, prefer, read_body, response_format
from carerecord.errors import Invalid, Issue, NotFound
from carerecord.fhir.outcome import information, outcome
from carerecord.services.export import Exports, parameters, parse_request, query_parameters
from carerecord.services.export.request import (
    GROUP,
    PATIENT,
    SYSTEM,
    as_query,
    check_caller,
    check_filters,
    documentation,
)
from carerecord.services.export.service import COMPLETE, FAILED
from carerecord.store.records import http_date
from carerecord.store.threads import off_loop

RETRY_AFTER_SECONDS = 2
_CHUNK = 256 * 1024
_BULK = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition"


def _operation(level: str, definition: str) -> dict[str, str]:
    return {"name": "export", "definition": f"{_BULK}/{definition}", "documentation": documentation(level)}


def capability_operations() -> dict[str, list[dict[str, str]]]:
    """The CapabilityStatement entries of the Patient and Group ``$export``, saying which
    parameters are supported (the specification's definitions list optional ones too)."""
    return {"Patient": [_operation(PATIENT, "patient-export")], "Group": [_operation(GROUP, "group-export")]}


def system_operations() -> list[dict[str, str]]:
    """The CapabilityStatement entry of the system ``$export``."""
    return [_operation(SYSTEM, "export")]


def _exports(request: Request) -> Exports:
    return request.app.state.exports  # type: ignore[no-any-return]


def _base(request: Request) -> str:
    return str(request.app.state.ctx.base)


async def _kick_off(request: Request, level: str, group: str | None = None) -> Response:
    media = response_format(request)
    who = principal(request)
    check_caller(who)
    if prefer(request, "respond-async") is None:
        raise Invalid("Bulk export runs asynchronously: send the header Prefer: respond-async", "Prefer")
    path = request.scope["path"][len("/fhir"):]
    params = query_parameters(list(request.query_params.multi_items()))
    post = request.method == "POST"
    if post:  # the parameters are in the body (and any query string is read too)
        params = [*params, *parameters(await read_body(request))]
        query = as_query(params)
    else:
        query = request.scope.get("query_string", b"").decode("latin-1")
    repo = request.app.state.ctx.repo
    req = parse_request(level, group, params, who, f"{path}?{query}" if query else path, repo.registry,
                        lenient=prefer(request, "handling") == "lenient", post=post, base=_base(request))
    if req.filters:  # a :below/:above code system must be known now, rather than fail the job
        await guarded.on_store(request, lambda: check_filters(repo, req))
    if group is not None:  # 404 (or 410) now, rather than a job that fails
        await guarded.on_store(request, lambda: repo.read("Group", group))
    client = request.scope.get("client")
    # Writing the job's folder syncs its files to disk: in a thread, not on the event loop.
    job = await off_loop(_exports(request).start, who, req, client[0] if client else None)
    status_url = f"{_base(request)}/$export-status/{job}"
    issues = [Issue("information", "informational", f"Export {job} started; poll {status_url}"),
              *(Issue("warning", "not-supported", note) for note in req.notes)]  # what lenient handling ignored
    return fhir_response(outcome(issues), 202, media=media, headers={"Content-Location": status_url})


async def export_system(request: Request) -> Response:
    return await _kick_off(request, SYSTEM)


async def export_patients(request: Request) -> Response:
    return await _kick_off(request, PATIENT)


async def export_group(request: Request) -> Response:
    return await _kick_off(request, GROUP, request.path_params["id"])


async def status(request: Request) -> Response:
    """GET: how the job is going; DELETE: remove it."""
    who = principal(request)
    job = request.path_params["job"]
    exports = _exports(request)
    if request.method == "DELETE":
        await off_loop(exports.cancel, who, job)  # removing large files: in a thread
        return fhir_response(information(f"Export {job} and its files are deleted"), 202,
                             media=response_format(request))
    found = exports.status(who, job)
    if found.status == COMPLETE:
        assert found.manifest is not None and found.expires_us is not None
        return Response(orjson.dumps(found.manifest), 200, media_type="application/json",
                        headers={"Expires": http_date(found.expires_us)})
    if found.status == FAILED:
        return fhir_response(outcome([Issue("error", "exception", found.error or "The export failed")]), 500,
                             media=response_format(request))
    return Response(status_code=202, headers={"X-Progress": _latin1(found.progress)[:200],
                                              "Retry-After": str(RETRY_AFTER_SECONDS)})


async def output_file(request: Request) -> Response:
    """One output file, streamed from an open handle (a deletion meanwhile does not cut it)."""
    who = principal(request)
    found = _exports(request).file(who, request.path_params["job"], request.path_params["name"])
    try:
        handle = open(found.path, "rb")  # noqa: SIM115 - closed by _chunks
    except FileNotFoundError:
        raise NotFound(f"Export {request.path_params['job']} has no file {request.path_params['name']}") from None
    size = os.fstat(handle.fileno()).st_size
    # The audit middleware commits this download's record before the first byte, then streams.
    request.scope.setdefault("state", {})["audit_before_body"] = True
    return StreamingResponse(_chunks(handle), media_type=found.media, headers={"Content-Length": str(size)})


def _chunks(handle: IO[bytes]) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(_CHUNK):
            yield chunk


def _latin1(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")
