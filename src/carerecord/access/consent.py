"""The patient's consent to sharing (FHIR Consent, http://hl7.org/fhir/R4/consent.html), as
the guard reads it on every request (never cached: a withdrawal counts at once).

Sharing for direct care across organisations is on by default, as in the NHS. A patient's
active Consent changes that:

- ``provision.type = deny`` with no ``actor``: **general dissent**. Only the organisations the
  patient is registered with, and the one that recorded the Consent (``Consent.organization``),
  keep access (break-glass still works, and is logged).
- ``deny`` with ``actor`` references to Organizations: dissent **from those organisations**.
- either with ``provision.class`` codes (resource type names, e.g. ``Observation``): dissent
  limited to those **categories** of record; other resources stay shared.
- ``provision.type = permit`` with ``securityLabel`` codes: **explicit consent** to share records
  with those sensitivity labels (with the ``actor`` organisations, or all when none is named).
- the **national data opt-out** is an active Consent with ``category`` :data:`OPT_OUT`; it never
  limits direct care, and the guard leaves the patient out of everything a secondary-use system
  client reaches (:func:`opted_out`, :func:`opted_out_among`, :func:`opted_out_condition`:
  one definition, read from the Consent's index rows, so a search can apply it in SQL).

Nested provisions are read like the top one; a provision's period is honoured when given.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection, FromClause, Select, and_, exists, select

from carerecord.store import schema as s

CONSENT_CATEGORY = "https://carerecord.org/fhir/CodeSystem/consent-category"
OPT_OUT = (CONSENT_CATEGORY, "national-data-opt-out")


@dataclass(slots=True)
class Sharing:
    """What a patient's consents say, for one organisation asking."""

    general_dissent: bool = False
    dissent_from: set[str] = field(default_factory=set)  # Organization refs
    dissent_types: dict[str | None, set[str]] = field(default_factory=dict)  # org (None: all) -> types
    recorded_by: set[str] = field(default_factory=set)
    permitted_labels: dict[str | None, set[tuple[str, str]]] = field(default_factory=dict)
    opted_out: bool = False

    def refuses(self, organization: str | None, registered: bool) -> bool:
        """Whether the whole record is withheld from ``organization``."""
        if organization in self.dissent_from:
            return True
        return (self.general_dissent and not registered and organization not in self.recorded_by)

    def hidden_types(self, organization: str | None, registered: bool) -> set[str]:
        """Resource types withheld from ``organization`` by category dissent."""
        out = set(self.dissent_types.get(organization, set()))
        if not registered and organization not in self.recorded_by:
            out |= self.dissent_types.get(None, set())
        out.discard(None)  # type: ignore[arg-type]
        return out

    def permits_label(self, organization: str | None, label: tuple[str, str]) -> bool:
        """Whether the patient has explicitly consented to ``organization`` seeing ``label``."""
        return any(label in self.permitted_labels.get(k, set()) for k in (None, organization))


def _codes(concepts: Any) -> set[tuple[str, str]]:
    return {(str(c.get("system", "")), str(c.get("code", ""))) for concept in concepts or []
            for c in (concept.get("coding") or [] if isinstance(concept, dict) else [])}


def _in_period(provision: dict[str, Any], now: str) -> bool:
    period = provision.get("period") or {}
    start, end = period.get("start"), period.get("end")
    return (not start or start[:19] <= now) and (not end or end[:19] >= now)


def _read(sharing: Sharing, provision: dict[str, Any], inherited: str | None, now: str) -> None:
    kind = provision.get("type", inherited)
    if not _in_period(provision, now):
        return
    actors = [a.get("reference", {}).get("reference") for a in provision.get("actor") or []
              if isinstance(a, dict)]
    orgs = [a for a in actors if isinstance(a, str) and a.startswith("Organization/")]
    targets: list[str | None] = [*orgs] or [None]
    types = {str(c["code"]) for c in provision.get("class") or [] if isinstance(c, dict) and c.get("code")}
    if kind == "deny":
        if types:
            for org in targets:
                sharing.dissent_types.setdefault(org, set()).update(types)
        elif orgs:
            sharing.dissent_from.update(orgs)
        else:
            sharing.general_dissent = True
    elif kind == "permit":
        found = {(str(c.get("system", "")), str(c.get("code", ""))) for c in provision.get("securityLabel") or []
                 if isinstance(c, dict)}
        for org in targets:
            sharing.permitted_labels.setdefault(org, set()).update(found)
    for nested in provision.get("provision") or []:
        if isinstance(nested, dict):
            _read(sharing, nested, kind, now)


def consents(conn: Connection, patient_id: str) -> list[dict[str, Any]]:
    """The patient's current Consent resources (any status)."""
    ref, r, v = s.idx_reference, s.resources, s.resource_versions
    rows = conn.execute(
        select(v.c.content).select_from(ref)
        .join(r, r.c.rid == ref.c.rid).join(v, and_(v.c.rid == r.c.rid, v.c.version == r.c.version))
        .where(ref.c.pkey == s.param_key("Consent", "patient"), ref.c.ref_type == "Patient",
               ref.c.ref_id == patient_id, r.c.deleted.is_(False))).all()
    return [orjson.loads(row[0]) for row in rows if row[0] is not None]


def sharing(conn: Connection, patient_id: str) -> Sharing:
    """Evaluate the patient's active Consents (read now, never cached)."""
    out = Sharing()
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    for consent in consents(conn, patient_id):
        if consent.get("status") != "active":
            continue
        if OPT_OUT in _codes(consent.get("category")):
            out.opted_out = True
            continue
        org = (consent.get("organization") or [{}])[0].get("reference")
        if isinstance(org, str):
            out.recorded_by.add(org)
        provision = consent.get("provision")
        if isinstance(provision, dict):
            _read(out, provision, None, now)
    return out


def _opt_out_consent(ref: FromClause) -> list[ColumnElement[bool]]:
    """Conditions on a row of ``idx_reference`` (``ref``) that it is the ``patient`` of an
    active Consent (``status`` active) with ``category`` :data:`OPT_OUT`. Index rows exist only
    for current, undeleted versions. The same rule as :attr:`Sharing.opted_out`, which reads
    the Consents themselves (tests/access/test_purpose.py checks they agree)."""
    category, status = s.idx_token.alias("opt_out_category"), s.idx_token.alias("opt_out_status")
    return [ref.c.pkey == s.param_key("Consent", "patient"), ref.c.ref_type == "Patient",
            exists().where(category.c.rid == ref.c.rid, category.c.pkey == s.param_key("Consent", "category"),
                           category.c.code == OPT_OUT[1], category.c.system == OPT_OUT[0]),
            exists().where(status.c.rid == ref.c.rid, status.c.pkey == s.param_key("Consent", "status"),
                           status.c.code == "active")]


def opted_out_condition(patient_id: ColumnElement[str]) -> ColumnElement[bool]:
    """True when the patient ``patient_id`` (a column) has registered a national data opt-out:
    a probe by patient on the Consent's reference index, so a search can leave their
    compartments out in SQL at the cost of an index seek per row, however many opted out."""
    ref = s.idx_reference.alias("opt_out_patient")
    return exists().where(ref.c.ref_id == patient_id, *_opt_out_consent(ref))


def opted_out_ids() -> Select[tuple[str]]:
    """The ids of every patient who has registered a national data opt-out (possibly twice),
    found from the category's index rows."""
    tok, ref = s.idx_token, s.idx_reference
    return (select(ref.c.ref_id).select_from(tok).join(ref, ref.c.rid == tok.c.rid)
            .where(tok.c.pkey == s.param_key("Consent", "category"), tok.c.code == OPT_OUT[1],
                   tok.c.system == OPT_OUT[0], *_opt_out_consent(ref)))


def opted_out_among(conn: Connection, patient_ids: Iterable[str]) -> set[str]:
    """Those of ``patient_ids`` who have registered a national data opt-out (one statement per
    500 ids)."""
    wanted = sorted(set(patient_ids))
    out: set[str] = set()
    ref = s.idx_reference
    for i in range(0, len(wanted), 500):
        q = select(ref.c.ref_id).distinct().where(ref.c.ref_id.in_(wanted[i:i + 500]), *_opt_out_consent(ref))
        out.update(str(row[0]) for row in conn.execute(q))
    return out


def opted_out(conn: Connection, patient_id: str) -> bool:
    """Whether the patient has registered a national data opt-out: secondary use (analytics,
    research exports) must leave them out. Direct care is never limited by it."""
    return bool(opted_out_among(conn, [patient_id]))
