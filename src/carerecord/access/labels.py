"""Who may change a resource's security labels, on every write path (issue 4; hazard H048).

A sensitivity label (``meta.security``: mental health, sexual health, safeguarding...) keeps a
resource from every organisation but its author unless the patient consents or the glass is
broken (:mod:`carerecord.access.guard`); a Patient's Confidentiality ``R``/``V`` label is their
S-flag (:mod:`carerecord.access.redaction`). A label is therefore a decision about who sees,
and being allowed to write a record does not make its writer the one to take it: a clinician
of another organisation reaching a mental health note by consent or break-glass must not lift
its label with a PUT, a PATCH, a conditional update or a transaction entry and so show it to
everyone, and a receptionist who updates a Patient's address must not lift (or set) its S-flag.

Adding or removing any ``meta.security`` coding (system and code; a changed display is no
change) of a resource that exists needs a labelling activity (``policy.LABELLING``):

- ``LABEL_OWN_RECORDS`` (clinicians, privacy officers): on resources their organisation wrote,
  i.e. whose ``meta.source`` names it (the guard stamps it on staff writes and keeps it on
  updates, so authorship cannot be claimed);
- ``LABEL_REGISTERED_RECORDS`` (privacy officers): also on the records of patients registered
  with their organisation (every patient of the resource), such as the S-flag on a Patient the
  practice registered but a system created.

A holder may change labels on a resource they may see but whose type their role does not write
(a privacy officer and a Patient): a change of the labels alone, nothing else. Trusted systems
state labels as they state ``meta.source``; patients and proxies change none (their own new
records may carry labels). A create is not a change: the creator's organisation becomes the
author, and a new label hides nothing that was shown.

The refusal is a 403 OperationOutcome naming ``meta.security``, decided only after the
resource was found visible (an invisible one is the 404 of an unknown one, so no oracle), and
audited as denied for the resource's patients. Nothing is written.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection

from carerecord.access.guard import Guard
from carerecord.access.policy import (
    OWN_RECORDS,
    REGISTERED_PATIENTS,
    authoring_organization,
    labelling_scopes,
)
from carerecord.access.principal import Kind
from carerecord.errors import Forbidden
from carerecord.fhir.indexing import patient_compartments
from carerecord.store.records import Stored

# meta elements that change with every write or are set by the server, not by the writer
_SERVER_META = frozenset({"versionId", "lastUpdated", "source", "security"})


def security(resource: dict[str, Any]) -> frozenset[tuple[str, str]]:
    """The (system, code) pairs of ``meta.security``: what a label change is judged on."""
    meta = resource.get("meta")
    found = meta.get("security") if isinstance(meta, dict) else None
    return frozenset((str(c.get("system", "")), str(c.get("code", "")))
                     for c in found or [] if isinstance(c, dict))


def may_label(guard: Guard) -> bool:
    """Whether this caller holds a labelling activity at all (before any resource is seen)."""
    role = guard.who.role
    return guard.who.kind is Kind.STAFF and role is not None and bool(labelling_scopes(role.activities))


def only_labels_differ(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """Whether ``after`` is ``before`` but for its security labels (and what the server sets)."""
    def rest(r: dict[str, Any]) -> dict[str, Any]:
        meta = r.get("meta")
        if not isinstance(meta, dict):
            meta = {}
        kept = {k: v for k, v in meta.items() if k not in _SERVER_META}
        return {**{k: v for k, v in r.items() if k != "meta"}, **({"meta": kept} if kept else {})}
    return rest(before) == rest(after)


def may_relabel(guard: Guard, conn: Connection, res_type: str, current: dict[str, Any]) -> bool:
    """Whether the caller may add or remove labels of ``current`` (a resource they can see)."""
    if guard.trusted:
        return True
    role = guard.who.role
    if guard.who.kind is not Kind.STAFF or role is None or role.organization is None:
        return False
    scopes = labelling_scopes(role.activities)
    if OWN_RECORDS in scopes and authoring_organization(current) == role.organization:
        return True
    if REGISTERED_PATIENTS in scopes:
        patients = _patients(res_type, current)
        return bool(patients) and all(guard.decide(conn, p).registered for p in patients)
    return False


def check(guard: Guard, conn: Connection, current: Stored, resource: dict[str, Any], *,
          relabel_only: bool = False) -> None:
    """Before ``resource`` replaces ``current`` (which the caller was found to see): Forbidden,
    naming ``meta.security``, when it adds or removes a label and the caller may not. With
    ``relabel_only`` (a labelling holder whose role does not write the type) anything but a
    change of labels alone is refused as a write of the type would be."""
    assert current.content is not None
    if not relabel_only and b'"security"' not in current.content and not _has_labels(resource):
        return  # no label before or after: the common write, not parsed again
    before = orjson.loads(current.content)
    changed = security(before) != security(resource)
    if relabel_only and not (changed and only_labels_differ(before, resource)):
        guard.refuse_write(current.res_type, _patients(current.res_type, before))
    if not changed or may_relabel(guard, conn, current.res_type, before):
        return
    guard.denied(_patients(current.res_type, before))
    raise Forbidden(f"The selected role may not add or remove security labels of {current.res_type}/"
                    f"{current.res_id} (meta.security): labels are changed by the organisation that "
                    "wrote it or a privacy officer" if guard.who.kind is Kind.STAFF else
                    f"Security labels (meta.security) of {current.res_type}/{current.res_id} are not "
                    "changed by patients or their proxies", f"{current.res_type}.meta.security")


def _has_labels(resource: dict[str, Any]) -> bool:
    meta = resource.get("meta")
    return isinstance(meta, dict) and bool(meta.get("security"))


def _patients(res_type: str, resource: dict[str, Any]) -> list[str]:
    patients = patient_compartments(resource)
    if not patients and res_type == "Patient" and isinstance(resource.get("id"), str):
        patients = [resource["id"]]
    return patients
