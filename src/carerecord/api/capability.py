"""The CapabilityStatement at /metadata (http://hl7.org/fhir/R4/capabilitystatement.html),
built from the search parameter registry and the interactions this server implements, so it
says exactly what the server does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from carerecord import __version__
from carerecord.fhir import model
from carerecord.fhir.search_params import SearchParamRegistry
from carerecord.fhir.search_query import TEXT_SEARCHES

_INTERACTIONS = ["read", "vread", "update", "patch", "delete", "history-instance",
                 "history-type", "create", "search-type"]
# Parameter types the search compiler answers ("special" ones, e.g. near, are not).
_SEARCHABLE = {"number", "date", "string", "token", "reference", "quantity", "uri", "composite"}
_COMMON = [{"name": "_id", "type": "token"}, {"name": "_lastUpdated", "type": "date"}]


def capability_statement(registry: SearchParamRegistry, base: str, *, date: str,
                         operations: Mapping[str, list[dict[str, str]]] | None = None,
                         system_operations: list[dict[str, str]] | None = None) -> bytes:
    """The CapabilityStatement; ``operations`` adds operations (name, definition) per type,
    ``system_operations`` those on the base (``$export``, which makes the server say it
    instantiates the Bulk Data server CapabilityStatement)."""
    resources: list[dict[str, Any]] = []
    for t in sorted(model.resource_types()):
        params = registry.for_type(t)
        search = [{"name": code, "definition": p.url, "type": p.type}
                  for code, p in sorted(params.items())
                  if p.type in _SEARCHABLE and (p.expression or code in TEXT_SEARCHES)]
        named = {s["name"] for s in search}
        search = [s for s in _COMMON if s["name"] not in named] + search
        refs = sorted(code for code, p in params.items() if p.type == "reference")
        resources.append({
            "type": t,
            "interaction": [{"code": code} for code in _INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalRead": "full-support",
            "conditionalUpdate": True,
            "conditionalDelete": "multiple",
            "referencePolicy": ["literal", "local", "enforced"],
            "searchInclude": ["*", *(f"{t}:{r}" for r in refs)],
            "searchRevInclude": ["*"],
            "searchParam": search,
            "operation": [{"name": "validate",
                           "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"},
                          *(operations or {}).get(t, [])],
        })
    doc = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "carerecord",
        "kind": "instance",
        "software": {"name": "carerecord", "version": __version__},
        "implementation": {"description": "carerecord FHIR R4 server", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "application/fhir+xml", "json", "xml"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json"],
        "rest": [{
            "mode": "server",
            "resource": resources,
            "interaction": [{"code": "transaction"}, {"code": "batch"},
                            {"code": "search-system"}, {"code": "history-system"}],
            "searchParam": _COMMON,
            **({"operation": system_operations} if system_operations else {}),
        }],
    }
    if any(op["name"] == "export" for op in system_operations or []):
        doc["instantiates"] = ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"]
    return orjson.dumps(doc)
