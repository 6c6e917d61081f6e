"""HTTP details of the FHIR API (http://hl7.org/fhir/R4/http.html): formats (JSON and XML,
``_format`` and Accept), request bodies, conditional headers, Prefer, and building responses.
Errors become OperationOutcomes in exactly one place, :func:`error_response`."""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from carerecord.errors import FhirError, Invalid, Issue, NotAcceptable, UnsupportedMediaType
from carerecord.fhir.outcome import from_error, outcome
from carerecord.fhir.xml import parse_xml, to_xml

log = logging.getLogger("carerecord.api")

JSON, XML = "application/fhir+json", "application/fhir+xml"
_FORMATS = {"json": JSON, "application/json": JSON, "application/fhir+json": JSON,
            "application/json+fhir": JSON, "xml": XML, "text/xml": XML, "application/xml": XML,
            "application/fhir+xml": XML, "application/xml+fhir": XML, "html": JSON, "text/html": JSON}
_JSON_BODY = ("application/fhir+json", "application/json", "application/json+fhir")
_XML_BODY = ("application/fhir+xml", "application/xml", "text/xml", "application/xml+fhir")
MAX_BODY = 64 * 1024 * 1024


def response_format(request: Request) -> str:
    """The media type to answer in: ``_format`` wins over Accept; JSON by default."""
    fmt = request.query_params.get("_format") if request.scope.get("query_string") else None
    if fmt:
        mt = _FORMATS.get(fmt.split(";")[0].strip())
        if mt is None:
            raise NotAcceptable(f"Unsupported _format {fmt!r}; use json or xml", "_format")
        return mt
    accept = request.headers.get("accept", "")
    if not accept:
        return JSON
    return _accepted(accept)


@lru_cache(maxsize=256)  # clients send the same few Accept headers: parsing them was 5% of a read
def _accepted(accept: str) -> str:
    for mt in _by_preference(accept):
        if mt in _FORMATS:
            return _FORMATS[mt]
        if mt in ("*/*", "application/*", "", "application/fhir+ndjson"):
            return JSON
    raise NotAcceptable(f"Cannot answer in {accept!r}; use application/fhir+json or application/fhir+xml")


def _by_preference(accept: str) -> list[str]:
    """The media types of an Accept header, most wanted first (by q, then order); q=0 ones,
    which the client refuses, are left out."""
    ranked = []
    for n, part in enumerate(accept.split(",")):
        mt, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            k, _, v = param.partition("=")
            if k.strip().lower() == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
        if q > 0:
            ranked.append((-q, n, mt.lower()))
    return [mt for _, _, mt in sorted(ranked)]


async def read_body(request: Request) -> dict[str, Any]:
    """The request body as a FHIR JSON dict, from JSON or XML; 415 for other media types and
    400 for malformed content."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise Invalid("The request body is larger than 64 MiB")
    if not raw:
        raise Invalid("The request has no body")
    if ctype in _XML_BODY:
        return _writable(parse_xml(raw))
    if ctype not in _JSON_BODY and ctype != "":
        raise UnsupportedMediaType(f"Content-Type {ctype!r} is not supported; use "
                                   "application/fhir+json or application/fhir+xml")
    return _writable(parse_json(raw))


def _writable(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` if the store can serialise it: orjson writes at most 255 nested arrays and
    objects, and reads up to 1024, so a deeper body would otherwise fail only when written."""
    try:
        orjson.dumps(doc)
    except TypeError:
        raise Invalid("The body is nested too deeply (at most 255 levels of objects and arrays)") from None
    return doc


def parse_json(raw: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Invalid(f"The body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise Invalid("The body must be a JSON object (a FHIR resource)")
    return doc


def etag_version(value: str | None, header: str) -> int | None:
    """The version number in an ETag-style header (``W/"3"``), None when absent."""
    if not value:
        return None
    text = value.strip().removeprefix("W/").strip().strip('"')
    if not text.isdigit():
        raise Invalid(f"{header} must be an ETag like W/\"3\", not {value!r}", header)
    return int(text)


def prefer(request: Request, key: str) -> str | None:
    """One token of the Prefer header, e.g. prefer(req, "return") -> "minimal"."""
    for part in request.headers.get("prefer", "").split(";"):
        for item in part.split(","):
            k, _, v = item.strip().partition("=")
            if k.strip().lower() == key:
                return v.strip().strip('"').lower()
    return None


def fhir_response(content: bytes | dict[str, Any], status: int = 200, *, media: str = JSON,
                  headers: dict[str, str] | None = None) -> Response:
    """A FHIR response. JSON bytes are sent as they are; XML is converted on the way out."""
    if media == XML:
        doc = orjson.loads(content) if isinstance(content, bytes) else content
        body = to_xml(doc)
    else:
        body = content if isinstance(content, bytes) else orjson.dumps(content)
    return Response(body, status, headers=headers, media_type=f"{media}; charset=utf-8")


def error_response(err: FhirError, media: str = JSON) -> Response:
    headers = {"Allow": "GET, POST, PUT, PATCH, DELETE"} if err.status == 405 else None
    return fhir_response(from_error(err), err.status, media=media, headers=headers)


def internal_error(request: Request, exc: Exception) -> Response:
    """A 500 with a bland OperationOutcome; the details go to the server log only."""
    log.exception("Unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    doc = outcome([Issue("fatal", "exception", "The server met an internal error; it has been logged")])
    return fhir_response(doc, 500)
