"""A patient's access log in plain words: who looked at this record, when, from which
organisation and why (issue 4, ``Patient/{id}/$access-log``).

:func:`may_view` decides who may see a patient's log; :func:`sentence` turns one stored
AuditEvent into a sentence a patient can read ("Dr Ann Smith, General practitioner at
Riverside Surgery, looked at your record (Observation/obs-1) on 23 November 2026 at 09:15
UTC, for your care."). Names of organisations are looked up when the log is shown (the
AuditEvent keeps the reference, as BALP does); people's names are those of their tokens at
the time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from html import escape
from typing import Any

from carerecord.access.audit import ACT_REASON, PARTICIPATION
from carerecord.access.principal import Kind, Principal, Purpose
from carerecord.access.roles import Activity
from carerecord.access.scopes import Verdict

_VERBS = {"read": "looked at", "vread": "looked at an earlier version of",
          "history-instance": "looked at the history of", "history-type": "looked through the history of",
          "history-system": "looked through the history of", "search-type": "searched",
          "search-system": "searched", "create": "added to", "update": "changed",
          "patch": "changed", "delete": "deleted from", "transaction": "sent a set of changes to",
          "batch": "sent a set of requests to", "operation": "used"}
_TRIED = {"looked at": "look at", "searched": "search", "added to": "add to", "changed": "change",
          "deleted from": "delete from", "used": "use"}


def may_view(principal: Principal, patient: str) -> bool | None:
    """True if ``principal`` may see ``patient``'s access log; False if they may see no
    access logs at all (a 403: says nothing about the patient); None if they may see some,
    but not this patient's (answered as not found, so there is no existence oracle).

    A patient sees their own, a proxy those of the patients they were granted, staff only
    with the view-audit activity (the privacy officer's), a system only with a scope that
    reads AuditEvent and not for secondary use (the log names patients, opted out or not)."""
    if principal.purpose is Purpose.SECONDARY_USE:
        return False
    if principal.kind in (Kind.PATIENT, Kind.PROXY):
        return True if patient in principal.patients else None
    if principal.kind is Kind.STAFF:
        return principal.may(Activity.VIEW_AUDIT)
    decision = principal.scopes.decide_any(principal.scope_contexts, "AuditEvent", "r")
    return decision.verdict is Verdict.ALLOWED


def _when(recorded: str) -> str:
    try:
        dt = datetime.fromisoformat(recorded.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return recorded
    return f"on {dt.day} {dt:%B %Y} at {dt:%H:%M} UTC"


def _agent(event: Mapping[str, Any], code: str) -> Mapping[str, Any] | None:
    for agent in event.get("agent", []):
        for c in agent.get("type", {}).get("coding", []):
            if c.get("system") == PARTICIPATION and c.get("code") == code:
                return agent  # type: ignore[no-any-return]
    return None


def _who(event: Mapping[str, Any], patient: str, names: Callable[[str], str | None]) -> str:
    user = _agent(event, "IRCP")
    if user is None:
        client: Mapping[str, Any] = next((a for a in event.get("agent", []) if a.get("who", {}).get("identifier")), {})
        return f"The system {client.get('who', {}).get('identifier', {}).get('value', 'unknown')}"
    who = user.get("who", {})
    ref = who.get("reference")
    if ref == f"Patient/{patient}":
        return "You"
    name = who.get("display") or (names(ref) if ref else None) or ref or "Someone"
    roles = [c.get("display") for r in user.get("role", []) for c in r.get("coding", []) if c.get("display")]
    org = _agent(event, "PROV")
    org_ref = org.get("who", {}).get("reference") if org else None
    org_name = (names(org_ref) or org_ref) if org_ref else None
    if roles and org_name:
        return f"{name}, {roles[0]} at {org_name},"
    if roles:
        return f"{name}, {roles[0]},"
    if ref and ref.startswith("RelatedPerson/"):
        return f"{name}, who you have given access to your record,"
    return str(name)


def _why(event: Mapping[str, Any]) -> str:
    purpose = (event.get("purposeOfEvent") or [{}])[0]
    code = next((c.get("code") for c in purpose.get("coding", []) if c.get("system") == ACT_REASON), None)
    basis = str(purpose.get("text", ""))
    if code == "ETREAT":
        reason = basis.partition(":")[2].strip()
        return f"in an emergency (break-glass), giving the reason \u201c{reason or 'none given'}\u201d"
    if code in ("PATRQT", "FAMRQT"):
        return "at your request"
    if code == "HCOMPL":
        return "to review who has accessed your record"
    if code == "HOPERAT":
        return "to run the service"
    if basis == "self-claimed":
        return "for your care, on a relationship they declared themselves (this is reviewed)"
    if basis.startswith("relationship:"):
        return f"for your care (you have a {basis.partition(':')[2].replace('-', ' ')} relationship with them)"
    return "for your care"


def sentence(event: Mapping[str, Any], patient: str, names: Callable[[str], str | None]) -> str:
    """One AuditEvent of ``patient``'s log as a plain-language sentence."""
    codes = [c.get("code") for c in event.get("subtype", [])]
    verb = _VERBS.get(str(codes[0]) if codes else "", "used")
    what = "your record"
    if codes and codes[0] == "operation" and len(codes) > 1:
        what = f"the {str(codes[1]).lstrip('$').replace('-', ' ')} function on your record"
    resources = [e["what"]["reference"] for e in event.get("entity", [])
                 if e.get("role", {}).get("code") == "4" and "what" in e]
    if resources:
        shown = ", ".join(resources[:5]) + (f" and {len(resources) - 5} more" if len(resources) > 5 else "")
        what += f" ({shown})"
    who = _who(event, patient, names)
    outcome = event.get("outcome", "0")
    when = _when(str(event.get("recorded", "")))
    if outcome == "0":
        return f"{who} {verb} {what} {when}, {_why(event)}."
    refused = "was refused" if "denied" in str(event.get("outcomeDesc", "")) else "did not succeed"
    return f"{who} tried to {_TRIED.get(verb, 'reach')} {what} {when} and {refused}."


def narrative(text: str) -> dict[str, str]:
    """A FHIR Narrative holding ``text``."""
    return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{escape(text)}</p></div>'}
