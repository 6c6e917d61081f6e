"""Searchset and history Bundles with paging links (http://hl7.org/fhir/R4/search.html#paging,
http://hl7.org/fhir/R4/http.html#history).

Links carry an opaque ``_cursor`` (a keyset position), never an offset into a moving result,
so next/previous/first/last stay correct while data changes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import orjson

from carerecord.errors import Issue
from carerecord.fhir import bundle as fb
from carerecord.fhir import model
from carerecord.fhir.outcome import outcome
from carerecord.fhir.search_query import Query
from carerecord.fhir.subset import keep_elements, mandatory_keys, mark_subsetted
from carerecord.store.history import HistoryPage
from carerecord.store.records import iso_instant, now_us
from carerecord.store.search import Hit, SearchResult


def page_url(path: str, params: list[tuple[str, str]], cursor: str | None) -> str:
    return _pages(path, params)(cursor)


def _pages(path: str, params: list[tuple[str, str]]) -> Callable[[str | None], str]:
    """The URL of a page of this search given its cursor: the search's own parameters
    (without any ``_cursor``) encoded once for all the links of a Bundle."""
    stem = urlencode([(k, v) for k, v in params if k != "_cursor"])

    def url(cursor: str | None) -> str:
        if not cursor:
            return f"{path}?{stem}" if stem else path
        tail = urlencode([("_cursor", cursor)])
        return f"{path}?{stem}&{tail}" if stem else f"{path}?{tail}"
    return url


def summary(node: dict[str, Any], type_name: str) -> dict[str, Any]:
    """The isSummary elements of ``node`` (http://hl7.org/fhir/R4/search.html#summary), keeping
    only summary children inside backbone elements too."""
    keys = model.summary_keys(type_name)
    kids = model.children(type_name) or {}
    out: dict[str, Any] = {}
    for k, v in node.items():
        if k != "resourceType" and k not in keys:
            continue
        child = kids.get(k)
        if child is not None and "." in child[1]:  # a backbone element: filter inside it too
            v = [summary(x, child[1]) for x in v] if isinstance(v, list) else summary(v, child[1])
        out[k] = v
    return out


def _subset(content: bytes, q: Query) -> bytes:
    """Apply _elements or _summary=true/text/data to one resource (parses it: only when asked)."""
    doc: dict[str, Any] = orjson.loads(content)
    if q.summary == "true":
        out = summary(doc, doc["resourceType"])
    elif q.elements:  # and the mandatory elements, which servers SHOULD always return (fhir/subset.py)
        out = keep_elements(doc, q.elements)
    elif q.summary == "text":
        keep = mandatory_keys(doc["resourceType"]) | {"text"}
        out = {k: v for k, v in doc.items() if k in keep}
    elif q.summary == "data":
        out = {k: v for k, v in doc.items() if k != "text"}
    else:
        return content
    return orjson.dumps(mark_subsetted(out))


def searchset(base: str, path: str, params: list[tuple[str, str]], q: Query, result: SearchResult,
              warnings: list[Issue]) -> bytes:
    """The searchset Bundle of one page."""
    page = _pages(path, params)
    links = [("self", page(q.cursor))]
    if q.summary != "count":
        links.append(("first", page(None)))
        if result.prev_cursor:
            links.append(("previous", page(result.prev_cursor)))
        if result.next_cursor:
            links.append(("next", page(result.next_cursor)))
        links.append(("last", page("last")))
    entries: list[dict[str, Any]] = []
    if q.summary != "count":
        subset = bool(q.elements) or q.summary in ("true", "text", "data")
        for hit in [*result.matches, *result.included]:
            entries.append(_entry(base, hit, _subset(hit.content, q) if subset else hit.content))
    if warnings:
        entries.append({"resource": outcome(warnings), "search": {"mode": "outcome"}})
    return fb.bundle("searchset", entries, total=result.total, links=links,
                     timestamp=iso_instant(now_us()))


def _entry(base: str, hit: Hit, content: bytes) -> dict[str, Any]:
    c = hit.container  # a contained resource: its container's URL and #id (search.html#contained)
    url = f"{base}/{c.res_type}/{c.res_id}#{hit.res_id}" if c is not None else f"{base}/{hit.res_type}/{hit.res_id}"
    return fb.entry(url, content, search={"mode": hit.mode})


def history_bundle(base: str, path: str, params: list[tuple[str, str]], page: HistoryPage) -> bytes:
    links = [("self", page_url(path, params, None))]
    if page.next_cursor:
        links.append(("next", page_url(path, params, ".".join(map(str, page.next_cursor)))))
    entries = []
    for st in page.entries:
        method = st.method or ("DELETE" if st.deleted else "PUT")
        url = st.res_type if method == "POST" else f"{st.res_type}/{st.res_id}"
        status = "204 No Content" if st.deleted else ("201 Created" if st.version == 1 else "200 OK")
        entries.append(fb.entry(f"{base}/{st.res_type}/{st.res_id}", st.content,
                                request={"method": method, "url": url},
                                response={"status": status, "etag": st.etag,
                                          "lastModified": iso_instant(st.last_updated)}))
    return fb.bundle("history", entries, total=page.total, links=links,
                     timestamp=iso_instant(now_us()))
