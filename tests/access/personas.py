"""The personas of issue 4 against the demo community, as tokens: each is minted for the demo
sign-in's person and role exactly as the sign-in would (tests/access/test_authorization_code.py
proves the sign-in itself), so the persona tests spend their time on what the guard decides."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import Engine

from carerecord.access.grants import Grantee
from carerecord.access.tokens import AccessTokens
from carerecord.cli.access import persona_bundle
from carerecord.demo import DEMO_TODAY, generate, person_resources, transaction

ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONF = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
SEED = 2026
SCOPE = "user/*.cruds patient/*.cruds"
PEOPLE = range(8)


def pid(index: int) -> str:
    return f"demo-patient-{index:06d}"


@dataclass(frozen=True)
class Persona:
    kind: str
    subject: str
    role: str | None = None  # role key of the role table
    practitioner_role: str | None = None
    organization: str | None = None
    patients: tuple[str, ...] = ()


def _staff(key: str, role: str, org: str) -> Persona:
    return Persona("staff", f"Practitioner/demo-staff-{key}", role, f"PractitionerRole/demo-role-{key}",
                   f"Organization/{org}")


GP = _staff("gp0-0", "doctor", "demo-org-gp0")
WARD_NURSE = _staff("hospital-2", "nurse", "demo-org-hospital")
PHARMACIST = _staff("pharmacy0-0", "pharmacist", "demo-org-pharmacy0")
PARAMEDIC = _staff("ambulance-0", "paramedic", "demo-org-ambulance")
CARE_WORKER = _staff("carehome0-2", "care-worker", "demo-org-carehome0")
RECEPTIONIST = _staff("gp0-8", "receptionist", "demo-org-gp0")
PRIVACY_OFFICER = _staff("privacy-officer", "privacy-officer", "demo-org-hospital")
# The demo community has two privacy officers: the hospital trust's and the first GP practice's.
PRACTICE_PRIVACY_OFFICER = _staff("gp0-privacy-officer", "privacy-officer", "demo-org-gp0")
PATIENT = Persona("patient", f"Patient/{pid(0)}", patients=(pid(0),))
PROXY = Persona("proxy", "RelatedPerson/demo-proxy-000001", patients=(pid(1),))
OTHER_PATIENT = Persona("patient", f"Patient/{pid(2)}", patients=(pid(2),))


def token(engine: Engine, live_server: str, who: Persona, scope: str = SCOPE, *, launch: str | None = None) -> str:
    tokens = AccessTokens(engine, live_server.removesuffix("/fhir"), live_server)
    grantee = Grantee(who.kind, who.subject, practitioner_role=who.practitioner_role, role=who.role,
                      organization=who.organization, patients=who.patients, patient=launch)
    return tokens.mint("persona-tests", scope, grantee, 300)[0]


def no_leaks(response: httpx.Response) -> None:
    response.read()
    assert response.status_code != 500, response.text
    assert "Traceback" not in response.text


def load_demo(live_server: str, system_token: str) -> Iterator[httpx.Client]:
    """A system client on the demo's shared sites, persona resources and people 0-7."""
    with httpx.Client(base_url=live_server, timeout=60, event_hooks={"response": [no_leaks]},
                      headers={"Accept": "application/fhir+json", "Authorization": f"Bearer {system_token}"}) as c:
        bundles = [next(generate(200, SEED)), *[transaction(person_resources(i, SEED, DEMO_TODAY)) for i in PEOPLE],
                   persona_bundle()]
        for bundle in bundles:
            r = c.post("", json=bundle)
            assert r.status_code == 200, r.text
        yield c


def entries(r: httpx.Response, mode: str | None = None) -> list[dict[str, Any]]:
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", [])
            if mode is None or e.get("search", {}).get("mode", "match") == mode]


def refs(resources: list[dict[str, Any]]) -> set[str]:
    return {f"{x['resourceType']}/{x['id']}" for x in resources}


def put(demo: httpx.Client, resource: dict[str, Any]) -> dict[str, Any]:
    """Write ``resource`` with its own id as the system client (which may create at will)."""
    r = demo.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
    assert r.status_code in (200, 201), r.text
    return r.json()  # type: ignore[no-any-return]


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def observation(patient: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": new_id("obs"), "status": "final", "code": {"text": "Note"},
            "subject": {"reference": f"Patient/{patient}"}, **extra}


def privacy_consent(patient: str, provision: dict[str, Any]) -> dict[str, Any]:
    """An active patient-privacy Consent of ``patient`` with ``provision`` (a deny or permit)."""
    return {"resourceType": "Consent", "id": new_id("consent"), "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                  "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": f"Patient/{patient}"}, "provision": provision}


def deny_to(org: str, *types: str) -> dict[str, Any]:
    """A deny provision naming ``org`` as recipient, for ``types`` only if given."""
    out: dict[str, Any] = {"type": "deny", "actor": [{"role": {"text": "recipient"},
                                                      "reference": {"reference": f"Organization/{org}"}}]}
    if types:
        out["class"] = [{"system": "http://hl7.org/fhir/resource-types", "code": t} for t in types]
    return out


def same_answer(a: httpx.Response, b: httpx.Response, a_id: str, b_id: str) -> None:
    """Two answers are identical but for the ids asked about."""
    assert a.status_code == b.status_code, (a.text, b.text)
    assert a.text.replace(a_id, "X") == b.text.replace(b_id, "X")


def practice_privacy_officer(demo: httpx.Client) -> Persona:
    """The first GP practice's privacy officer, a persona of the demo community (its
    Practitioner and PractitionerRole come with the persona bundle); checks they are there."""
    r = demo.get(f"/{PRACTICE_PRIVACY_OFFICER.practitioner_role}")
    assert r.status_code == 200, r.text
    assert r.json()["organization"]["reference"] == PRACTICE_PRIVACY_OFFICER.organization
    return PRACTICE_PRIVACY_OFFICER


def open_encounter(demo: httpx.Client, patient: str, org: str) -> str:
    enc = {"resourceType": "Encounter", "id": new_id("enc"), "status": "in-progress",
           "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER"},
           "subject": {"reference": f"Patient/{patient}"}, "serviceProvider": {"reference": f"Organization/{org}"}}
    put(demo, enc)
    return str(enc["id"])
