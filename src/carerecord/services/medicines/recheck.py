"""The safety checks again at the steps after signing: pharmacy verification, the issue of a
repeat, and dispensing.

Why: the record moves on after a prescription is signed. An allergy recorded since, or an
interacting medicine started by another prescriber, must stop the pharmacist verifying it, the
GP issuing the next repeat and the pharmacist handing it over, just as it would have stopped
the prescriber (the brief: "every step checks allergies, drug-drug interactions, duplicate
therapy and dose limits"). The bedside step has its own re-check (administration.py).

Each re-check runs ``checker.check_order`` against the patient's record as it is now, leaving
out the order being acted on and the other orders for the same prescription (its repeat
authorisation and that authorisation's issues), which would otherwise show as a duplicate of
itself. A critical finding that was already overridden with a reason on this prescription (a
DetectedIssue linked from the order or its authorisation, of the same kind and on the same
evidence) comes back as a warning saying so; any other critical finding blocks the step unless
it is overridden, with a reason, at this step, and that override is written as a DetectedIssue
linked from the order, as at signing."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any
from urllib.parse import quote

from carerecord.services.medicines.checker import Gate, check_order
from carerecord.services.medicines.detected_issue import FINDING_KIND, Override
from carerecord.services.medicines.findings import Finding, Severity
from carerecord.services.medicines.knowledge import KnowledgeBase
from carerecord.services.medicines.order import order_from
from carerecord.services.medicines.outcome import gate
from carerecord.services.medicines.records import Records, reference_id
from carerecord.services.medicines.resolve import Resolver


def _ref(order: Mapping[str, Any]) -> str:
    return f"MedicationRequest/{order['id']}"


def prescription_family(records: Records, order: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``order``, the authorisations it is ``basedOn``, and every issue made from those (or
    from ``order`` itself when it is the authorisation): the orders for one prescription."""
    family: dict[str, dict[str, Any]] = {_ref(order): dict(order)}
    for based in order.get("basedOn", ()):
        auth_id = reference_id(based, "MedicationRequest")
        if auth_id is not None and (found := records.read("MedicationRequest", auth_id)):
            family[f"MedicationRequest/{auth_id}"] = found
    roots = set(family)
    subject = quote(str(order["subject"]["reference"]), safe="/")
    for issue in records.search("MedicationRequest", f"subject={subject}&intent=instance-order"):
        if any(b.get("reference") in roots for b in issue.get("basedOn", ())):
            family[_ref(issue)] = issue
    return list(family.values())


def _accepted(records: Records, family: Iterable[Mapping[str, Any]]) -> set[tuple[str, frozenset[str]]]:
    """(finding kind, evidence references) of the overrides recorded on the prescription."""
    own = {_ref(o) for o in family}
    out: set[tuple[str, frozenset[str]]] = set()
    for order in family:
        for link in order.get("detectedIssue", ()):
            ref = str(link.get("reference", ""))
            issue = records.read("DetectedIssue", ref.split("/", 1)[1]) if "/" in ref else None
            if issue is None:
                continue
            kinds = [c.get("code") for c in (issue.get("code") or {}).get("coding", ()) if c.get("system") == FINDING_KIND]
            evidence = frozenset(str(i.get("reference")) for i in issue.get("implicated", ())
                                 if i.get("reference") and i.get("reference") not in own)
            out.update((str(k), evidence) for k in kinds if k)
    return out


def recheck(records: Records, order: Mapping[str, Any], pid: str, now: datetime, kb: KnowledgeBase,
            resolver: Resolver) -> list[Finding]:
    """The findings for ``order`` against the patient's record now (see the module docstring):
    critical ones already overridden on this prescription are lowered to warnings."""
    family = prescription_family(records, order)
    ctx = records.patient_context(pid, resolver, now.date(), frozenset(_ref(o) for o in family))
    mine = order_from(dict(order), resolver)
    accepted = _accepted(records, family)
    out = []
    for f in check_order(mine, ctx, kb, resolver, [mine]):
        evidence = frozenset(e.reference for e in f.evidence if e.reference)
        if f.severity is Severity.CRITICAL and (f.kind, evidence) in accepted:
            f = replace(f, severity=Severity.WARNING, summary=f"{f.summary} (overridden when prescribed)")
        out.append(f)
    return out


def recheck_gate(records: Records, order: Mapping[str, Any], pid: str, now: datetime, kb: KnowledgeBase,
                 resolver: Resolver, overrides: Mapping[str, Override], actor: str | None,
                 extra: Iterable[Finding] = ()) -> tuple[list[Finding], Gate]:
    """The re-check's findings (with ``extra`` ones, e.g. the repeat rules) and whether the step
    may go ahead given ``overrides`` made at this step by ``actor``."""
    findings = [*extra, *recheck(records, order, pid, now, kb, resolver)]
    authored = {k: Override(v.reason, v.comment, v.author or actor or "") for k, v in overrides.items()}
    return findings, gate(findings, authored, pid, now)


def link_issues(records: Records, order: dict[str, Any], result: Gate) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Write the step's overrides as DetectedIssues implicating ``order`` and link them from it;
    the order (not yet saved again) and the issues written."""
    me = _ref(order)
    written = []
    for issue in result.detected_issues:
        refs = [i for i in issue.get("implicated", []) if i.get("reference") not in ("", None, me)]
        issue["implicated"] = [{"reference": me}, *refs]
        written.append(records.create(issue))
    if written:
        order["detectedIssue"] = [*order.get("detectedIssue", []),
                                  *({"reference": f"DetectedIssue/{i['id']}"} for i in written)]
    return order, written
