"""Bundle assembly (http://hl7.org/fhir/R4/bundle.html) around stored resource bytes.

Resources inside a Bundle are spliced in as the exact bytes the store holds
(``orjson.Fragment``), so building a searchset or history page never parses or re-serialises
them."""

from __future__ import annotations

from typing import Any

import orjson


def entry(full_url: str | None, content: bytes | None, **parts: Any) -> dict[str, Any]:
    """One Bundle.entry with ``content`` spliced in raw; ``parts`` adds search/request/response."""
    out: dict[str, Any] = {}
    if full_url:
        out["fullUrl"] = full_url
    if content is not None:
        out["resource"] = orjson.Fragment(content)
    out.update({k: v for k, v in parts.items() if v is not None})
    return out


def bundle(kind: str, entries: list[dict[str, Any]], *, total: int | None = None,
           links: list[tuple[str, str]] | None = None, bundle_id: str | None = None,
           timestamp: str | None = None) -> bytes:
    """Serialise a Bundle of type ``kind`` (searchset, history, transaction-response, ...)."""
    doc: dict[str, Any] = {"resourceType": "Bundle"}
    if bundle_id:
        doc["id"] = bundle_id
    if timestamp:
        doc["meta"] = {"lastUpdated": timestamp}
    doc["type"] = kind
    if timestamp:
        doc["timestamp"] = timestamp
    if total is not None:
        doc["total"] = total
    if links:
        doc["link"] = [{"relation": rel, "url": url} for rel, url in links]
    if entries:
        doc["entry"] = entries
    return orjson.dumps(doc)
