"""Finding the literal references inside a resource (http://hl7.org/fhir/R4/references.html).

Used by transactions to rewrite ``urn:uuid:`` and conditional references to the ids the server
assigned, and by the store to check that every relative reference points at something that
exists."""

from __future__ import annotations

import re
from typing import Any

_RELATIVE = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/([A-Za-z0-9\-.]{1,64}))?$")


def reference_objects(node: Any, path: str) -> list[tuple[str, dict[str, Any]]]:
    """Every JSON object holding a string ``reference`` under ``node``, with its FHIRPath.
    Contained resources are included (their references resolve the same way)."""
    out: list[tuple[str, dict[str, Any]]] = []
    _collect(node, path, out)
    return out


def _collect(node: Any, path: str, out: list[tuple[str, dict[str, Any]]]) -> None:
    if type(node) is dict:
        ref = node.get("reference")
        if type(ref) is str:
            out.append((path + ".reference", node))
        for key, value in node.items():
            tv = type(value)
            if tv is dict:
                if key != "div":
                    _collect(value, f"{path}.{key}", out)
            elif tv is list and value and type(value[0]) in (dict, list):
                for i, item in enumerate(value):
                    _collect(item, f"{path}.{key}[{i}]", out)


def split_relative(ref: str) -> tuple[str, str] | None:
    """("Patient", "123") for "Patient/123" or "Patient/123/_history/2"; None otherwise."""
    m = _RELATIVE.match(ref)
    return (m[1], m[2]) if m else None


def local_reference(ref: str, base: str | None) -> str:
    """An absolute reference to this server (``{base}/Patient/1``) as the relative one."""
    if base and ref.startswith(base + "/"):
        return ref[len(base) + 1:]
    return ref
