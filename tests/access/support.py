"""Helpers of the sign-in and token tests: a community of people to sign in as, and a driver
that runs the authorisation code flow with PKCE over real HTTP, the way a browser and a SMART
app would (the browser's part: read the sign-in page, post the form, follow the choice page)."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass, field
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import Engine

from carerecord.access.clients import APP, Clients
from carerecord.access.users import Users

PASSWORD = "correct horse battery staple"
REDIRECT = "https://app.example.org/callback"
APP_SCOPE = ("openid fhirUser profile launch launch/patient offline_access online_access "
             "patient/*.cruds user/*.cruds")


def origin(fhir_base: str) -> str:
    return fhir_base[: -len("/fhir")]


def pkce() -> tuple[str, str]:
    """A code verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def hidden_fields(html: str) -> dict[str, str]:
    return {unescape(n): unescape(v) for n, v in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html)}


def choices(html: str) -> list[str]:
    return [unescape(v) for v in re.findall(r'name="choice" value="([^"]*)"', html)]


@dataclass
class Community:
    """A small world for sign-in: an organisation, a GP with two roles (GP at the practice,
    receptionist elsewhere), a patient, a proxy granted two patients, and their accounts."""

    fhir: httpx.Client
    engine: Engine
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def put(self, resource: dict[str, Any]) -> None:
        r = self.fhir.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
        assert r.status_code in (200, 201), r.text

    def build(self) -> Community:
        for org in ("org-practice", "org-other"):
            self.put({"resourceType": "Organization", "id": org, "name": f"The {org}"})
        self.put({"resourceType": "Practitioner", "id": "dr-who", "name": [{"family": "Who", "prefix": ["Dr"]}]})
        self.put(_role("role-gp", "dr-who", "org-practice", "R0260", "General Medical Practitioner"))
        self.put(_role("role-desk", "dr-who", "org-other", "R1730", "Receptionist"))
        for pid, family in (("pat-1", "One"), ("pat-2", "Two"), ("pat-3", "Three")):
            # pat-1 is registered at the GP's practice: the legitimate relationship the guard asks for
            registered = {"generalPractitioner": [{"reference": "Organization/org-practice"}]} if pid == "pat-1" else {}
            self.put({"resourceType": "Patient", "id": pid, "name": [{"family": family, "given": ["Pat"]}], **registered})
        self.put({"resourceType": "Encounter", "id": "enc-1", "status": "in-progress",
                  "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                  "subject": {"reference": "Patient/pat-1"}})
        for rp, pat in (("rp-1", "pat-1"), ("rp-2", "pat-2")):
            self.put({"resourceType": "RelatedPerson", "id": rp, "active": True,
                      "patient": {"reference": f"Patient/{pat}"}, "name": [{"family": "Carer"}]})
        users = Users(self.engine)
        users.add(self.user("gp"), PASSWORD, "staff", "Practitioner/dr-who", display="Dr Who")
        users.add(self.user("patient"), PASSWORD, "patient", "Patient/pat-1", display="Pat One")
        users.add(self.user("proxy"), PASSWORD, "proxy", "RelatedPerson/rp-1", grants=("RelatedPerson/rp-2",))
        return self

    def user(self, name: str) -> str:
        return f"{name}-{self.tag}"

    def app(self, scope: str = APP_SCOPE, *, confidential: bool = False) -> tuple[str, str | None]:
        made = Clients(self.engine).add(f"app {self.tag}", scope, kind=APP, redirect_uris=(REDIRECT,),
                                        secret=confidential)
        return made.client.client_id, made.secret


def _role(rid: str, practitioner: str, org: str, code: str, display: str) -> dict[str, Any]:
    return {"resourceType": "PractitionerRole", "id": rid, "active": True,
            "practitioner": {"reference": f"Practitioner/{practitioner}"},
            "organization": {"reference": f"Organization/{org}", "display": f"The {org}"},
            "code": [{"coding": [{"system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-SDSJobRoleName",
                                  "code": code, "display": display}]}]}


@dataclass
class Flow:
    """One run of the authorisation code flow for ``client_id``."""

    http: httpx.Client  # on the server's origin (the browser)
    fhir_base: str
    client_id: str
    scope: str = APP_SCOPE
    extra: dict[str, str] = field(default_factory=dict)
    verifier: str = ""
    state: str = field(default_factory=lambda: secrets.token_urlsafe(8))

    def params(self) -> dict[str, str]:
        self.verifier, challenge = pkce()
        return {"response_type": "code", "client_id": self.client_id, "redirect_uri": REDIRECT,
                "scope": self.scope, "state": self.state, "aud": self.fhir_base, "code_challenge": challenge,
                "code_challenge_method": "S256", **self.extra}

    def sign_in(self, username: str, password: str = PASSWORD, choice: str | None = None) -> httpx.Response:
        """Open the sign-in page, post the form (and the choice page); the final response."""
        page = self.http.get("/oauth/authorize", params=self.params())
        assert page.status_code == 200, page.text
        form = hidden_fields(page.text) | {"username": username, "password": password}
        r = self.http.post("/oauth/authorize", data=form)
        if r.status_code == 200 and 'name="choice"' in r.text:
            options = choices(r.text)
            picked = choice if choice is not None else options[0]
            r = self.http.post("/oauth/authorize", data=hidden_fields(r.text) | {"choice": picked})
        return r

    def code(self, username: str, choice: str | None = None) -> str:
        r = self.sign_in(username, choice=choice)
        assert r.status_code == 302, r.text
        query = parse_qs(urlsplit(r.headers["location"]).query)
        assert query["state"] == [self.state]
        return query["code"][0]

    def exchange(self, code: str, secret: str | None = None, verifier: str | None = None) -> httpx.Response:
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                "code_verifier": self.verifier if verifier is None else verifier}
        auth = (self.client_id, secret) if secret else None
        if not secret:
            data["client_id"] = self.client_id
        return self.http.post("/oauth/token", data=data, auth=auth)

    def token(self, username: str, choice: str | None = None) -> dict[str, Any]:
        r = self.exchange(self.code(username, choice))
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]
