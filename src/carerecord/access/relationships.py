"""Legitimate relationships: which patients a member of staff reaches through their selected
role's organisation (issue 4, "Whose records").

A relationship exists, at the organisation ``O`` of the selected PractitionerRole ``R`` held by
Practitioner ``P``, when the patient

- is registered with it: ``Patient.generalPractitioner`` or ``managingOrganization`` names O, P
  or R;
- has an open EpisodeOfCare there (which is also how a social care package with a care home or
  home-care agency is modelled), an open Encounter it provides or P takes part in, an open
  referral (ServiceRequest) or pharmacy Task to it, an open Appointment with it, or an active
  CareTeam that includes O, P or R; or a MedicationRequest naming it as intended performer.

The answer is SQL (a SELECT of patient ids over the index tables), so a search can be
restricted to the permitted compartments in the database and page honestly. It is built anew
for each request and never cached: a discharge or a closed episode takes effect on the very
next request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, CompoundSelect, Select, and_, literal, or_, select, union

from carerecord.store import schema as s

_REF, _TOK, _COMP = s.idx_reference, s.idx_token, s.compartments

# (resource type, reference parameters naming the carer, status parameter, open statuses)
OPEN_LINKS: tuple[tuple[str, tuple[str, ...], str, tuple[str, ...]], ...] = (
    ("EpisodeOfCare", ("organization", "care-manager"), "status", ("planned", "waitlist", "active", "onhold")),
    ("Encounter", ("service-provider", "participant"), "status",
     ("planned", "arrived", "triaged", "in-progress", "onleave")),
    ("ServiceRequest", ("performer",), "status", ("active", "on-hold")),
    ("Appointment", ("actor",), "status", ("proposed", "pending", "booked", "arrived", "checked-in", "waitlist")),
    ("CareTeam", ("participant",), "status", ("proposed", "active", "suspended")),
    ("Task", ("owner",), "status", ("requested", "received", "accepted", "ready", "in-progress", "on-hold")),
    ("MedicationRequest", ("intended-performer",), "status", ("active", "on-hold")),
)
REGISTRATION = ("general-practitioner", "organization")


@dataclass(frozen=True, slots=True)
class Carer:
    """Whom a relationship is with: the organisation, practitioner and PractitionerRole, as
    (type, id) pairs."""

    organization: str | None
    practitioner: str | None
    practitioner_role: str | None

    def refs(self) -> list[tuple[str, str]]:
        out = []
        for typ, ref in (("Organization", self.organization), ("Practitioner", self.practitioner),
                         ("PractitionerRole", self.practitioner_role)):
            if ref:
                out.append((typ, ref.split("/")[-1]))
        return out


def _names(carer: Carer) -> ColumnElement[bool]:
    refs = carer.refs()
    if not refs:
        return literal(False)
    return or_(*[and_(_REF.c.ref_type == t, _REF.c.ref_id == i) for t, i in refs])


def registered(carer: Carer, patient: str | None = None) -> Select[tuple[str]]:
    """Patients registered with the carer (``generalPractitioner``/``managingOrganization``)."""
    r = s.resources.alias("registered_patient")  # never correlated with an outer search's row
    q = (select(r.c.res_id).select_from(_REF).join(r, r.c.rid == _REF.c.rid)
         .where(_REF.c.pkey.in_([s.param_key("Patient", c) for c in REGISTRATION]), _names(carer),
                r.c.deleted.is_(False)))
    return q.where(r.c.res_id == patient) if patient is not None else q


def registered_with(organization: str) -> Select[tuple[str]]:
    """Patients registered with ``organization`` ("Organization/x") itself or one of its
    PractitionerRoles (``generalPractitioner``/``managingOrganization``): whose privacy officer
    looks after their record (the access queue)."""
    org_id = organization.split("/")[-1]
    role, role_ref = s.resources.alias("registering_role"), _REF.alias("registering_role_org")
    roles = (select(role.c.res_id).select_from(role_ref).join(role, role.c.rid == role_ref.c.rid)
             .where(role_ref.c.pkey == s.param_key("PractitionerRole", "organization"),
                    role_ref.c.ref_type == "Organization", role_ref.c.ref_id == org_id,
                    role.c.deleted.is_(False)))
    r = s.resources.alias("registered_patient")
    return (select(r.c.res_id).select_from(_REF).join(r, r.c.rid == _REF.c.rid)
            .where(_REF.c.pkey.in_([s.param_key("Patient", c) for c in REGISTRATION]), r.c.deleted.is_(False),
                   or_(and_(_REF.c.ref_type == "Organization", _REF.c.ref_id == org_id),
                       and_(_REF.c.ref_type == "PractitionerRole", _REF.c.ref_id.in_(roles)))))


def related(carer: Carer, patient: str | None = None, also: Sequence[Select[tuple[str]]] = ()) -> CompoundSelect:
    """Every patient with a legitimate relationship to ``carer`` (or only ``patient``, to
    check one): registration or any open link of :data:`OPEN_LINKS`; ``also`` adds further
    SELECTs of patient ids (the caller's self-claims and break-glass grants)."""
    parts: list[Select[tuple[str]]] = [registered(carer, patient), *also]
    for res_type, ref_codes, status_code, statuses in OPEN_LINKS:
        links = select(_REF.c.rid).where(_REF.c.pkey.in_([s.param_key(res_type, c) for c in ref_codes]),
                                         _names(carer))
        open_ = select(_TOK.c.rid).where(_TOK.c.pkey == s.param_key(res_type, status_code),
                                         _TOK.c.code.in_(statuses))
        q = select(_COMP.c.patient_id).where(_COMP.c.rid.in_(links), _COMP.c.rid.in_(open_))
        parts.append(q.where(_COMP.c.patient_id == patient) if patient is not None else q)
    return union(*parts)
