"""Which FHIR interaction, on which resource type, an HTTP request is: what SMART scopes are
checked against (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html).

Each request maps to one or more (resource type, letter) needs, with the letters of SMART v2:
c create, r read (read, vread, instance history), u update (and patch), d delete, s search
(and type or system history). ``*`` as a type means "every type" (system-level search and
history): only a wildcard scope satisfies it. ``_revinclude`` and typed ``_include`` add a
read or search need on the types they pull in. A transaction or batch is checked entry by
entry with :func:`entry_needs`.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit


@dataclass(frozen=True, slots=True)
class Need:
    resource_type: str
    letter: str
    res_id: str | None = None  # the instance, for read-like interactions


_BY_METHOD = {"POST": "c", "PUT": "u", "PATCH": "u", "DELETE": "d"}


def needs(method: str, segments: list[str], params: list[tuple[str, str]]) -> list[Need]:
    """The needs of a request on ``[base]/`` + ``segments`` (the path after /fhir, split)."""
    n = len(segments)
    method = "GET" if method == "HEAD" else method
    if n and segments[0] in EXPORT_JOB_PATHS:
        return []  # a job's status and files: its owner only, each file's type checked (api/export.py)
    if n and segments[-1] == "$export":
        return _export(segments, params)
    if n == 0:
        if method == "POST":
            return []  # transaction/batch: checked per entry once the body is read
        return _system_search(params)
    first = segments[0]
    if n == 1 and first == "_history":
        return [Need("*", "s")]
    if n == 1 and first == "_search":
        return [Need("*", "s")]
    if n == 1:
        letter = "s" if method == "GET" else _BY_METHOD.get(method, "?")
        return [Need(first, letter), *_included(params)]
    second = segments[1]
    if n == 2 and second in ("_history", "_search"):
        return [Need(first, "s"), *_included(params)]
    if n == 2 and second == "$validate":
        return [Need(first, "r")]
    if n == 2:
        letter = "r" if method == "GET" else _BY_METHOD.get(method, "?")
        return [Need(first, letter, second)]
    if n == 3 and segments[2] in ("_history", "$validate"):
        return [Need(first, "r", second)]
    if n == 3 and segments[2].startswith("$"):  # an instance operation: what it reads and writes
        wanted = OPERATION_NEEDS.get((first, segments[2][1:]))
        if wanted is None:
            return []  # no route serves it: authenticated, then routing answers 404
        return [Need(first, wanted[0], second), *(Need(t, letter) for t, letter in wanted[1:])]
    if n == 4 and segments[2] == "_history":
        return [Need(first, "r", second)]
    if n == 3:  # compartment search: [base]/Patient/1/Observation
        return [Need(segments[2], "s"), *_included(params)]
    return []  # no route serves this shape: authenticated, then routing answers 404


# The medicines operations (api/medicines.py): (type, name) -> the letter needed on the
# instance itself, then (type, letter) for every other type the operation reads or writes.
_RX, _TASK, _DI = "MedicationRequest", "Task", "DetectedIssue"
OPERATION_NEEDS: dict[tuple[str, str], tuple[str, *tuple[tuple[str, str], ...]]] = {
    (_RX, "check"): ("r", ("AllergyIntolerance", "s"), ("Observation", "s")),
    (_RX, "sign"): ("u", (_DI, "c"), (_TASK, "c")),
    (_RX, "stop"): ("u", (_TASK, "u")),
    (_RX, "change"): ("u", (_RX, "c"), (_DI, "c"), (_TASK, "c")),
    (_RX, "administer"): ("r", ("MedicationAdministration", "c"), (_DI, "c")),
    (_RX, "request-repeat"): ("r", (_TASK, "c")),
    (_RX, "issue"): ("u", (_RX, "c"), (_DI, "c"), (_TASK, "c")),
    (_RX, "dispense"): ("u", ("MedicationDispense", "c"), (_TASK, "u")),
    (_RX, "prescription"): ("r", ("Patient", "r"), ("Practitioner", "r"), ("PractitionerRole", "r"),
                            ("Organization", "r")),
    (_TASK, "verify"): ("u", (_RX, "u")),
    (_TASK, "query"): ("u", (_TASK, "c")),
    (_TASK, "reject"): ("u", (_RX, "u")),
    (_TASK, "approve-repeat"): ("u", (_RX, "c"), (_RX, "u"), (_DI, "c"), (_TASK, "c")),
    (_TASK, "reject-repeat"): ("u",),
    ("Patient", "administration-chart"): ("r", (_RX, "s"), ("MedicationAdministration", "s")),
    # $everything needs read of the Patient; each other type is returned only where the scopes
    # allow it (api/everything.py filters by scope, so a narrower token gets less, not a 403)
    ("Patient", "everything"): ("r",),
}


EXPORT_JOB_PATHS = frozenset({"$export-status", "$export-file"})


def _export(segments: list[str], params: list[tuple[str, str]]) -> list[Need]:
    """Bulk export's kick-off: read and search of each type asked for by ``_type`` (without it
    the types are those the scopes allow, and the kick-off refuses a client they allow none),
    and read of the Group exported."""
    types = [t.strip() for k, v in params if k == "_type" for t in v.split(",") if t.strip()]
    group = [Need("Group", "r", segments[1])] if len(segments) == 3 and segments[0] == "Group" else []
    return [*group, *(Need(t, letter) for t in dict.fromkeys(types) for letter in ("r", "s"))]


def _system_search(params: list[tuple[str, str]]) -> list[Need]:
    types = [t for k, v in params if k == "_type" for t in v.split(",") if t]
    return [Need(t, "s") for t in types] if types else [Need("*", "s")]


def _included(params: list[tuple[str, str]]) -> list[Need]:
    """``_revinclude=Source:param`` needs search on Source; ``_include=Type:param:Target``
    needs read on Target. An untyped ``_include`` is left to the guarded repository (part 2),
    which filters every returned resource."""
    out = []
    for k, v in params:
        name = k.split(":")[0]
        parts = v.split(":")
        if name == "_revinclude" and parts and parts[0] not in ("", "*"):
            out.append(Need(parts[0], "s"))
        elif name == "_revinclude":
            out.append(Need("*", "s"))
        elif name == "_include" and len(parts) >= 3 and parts[2]:
            out.append(Need(parts[2], "r"))
    return out


def entry_needs(method: str, url: str) -> list[Need]:
    """The needs of one transaction or batch entry (``request.method`` and ``request.url``)."""
    parts = urlsplit(url)
    segments = [p for p in parts.path.split("/") if p]
    params = parse_qsl(parts.query, keep_blank_values=True)
    method = method.upper()
    if not segments or method not in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"):
        return []  # the transaction processor refuses such an entry itself (400)
    if method == "PUT" and len(segments) == 1:
        return [Need(segments[0], "u")]
    return needs(method, segments, params)
