"""`carerecord clients`, `carerecord users` and the demo community's persona sign-ins."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine

from carerecord.access.clients import Clients
from carerecord.access.directory import Directory
from carerecord.access.tokens import AccessTokens
from carerecord.access.users import Users
from carerecord.demo.signins import DEMO_PASSWORD, PERSONAS
from carerecord.store.repository import Repository


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, "-m", "carerecord.cli", *args], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return out


def test_clients_add_prints_a_secret_or_a_generated_private_key_once(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'c.db'}"
    secret = _run("clients", "add", "lab feed", "--scope", "system/*.rs", "--database", db).stdout
    assert "client_secret: " in secret and "client_id: lab-feed-" in secret
    keyed = _run("clients", "add", "gp system", "--scope", "system/Patient.rs", "--jwks-key", "--database", db).stdout
    jwk = json.loads(keyed.split("private key (JWK; shown once, keep it secret):\n")[1].splitlines()[0])
    assert jwk["kty"] == "EC" and jwk["alg"] == "ES384" and "d" in jwk
    assert "-----BEGIN PRIVATE KEY-----" in keyed and "client_secret" not in keyed


def test_clients_add_registers_a_purpose_direct_care_unless_told_secondary_use(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'p.db'}"
    care = _run("clients", "add", "gp feed", "--scope", "system/*.rs", "--database", db).stdout
    research = _run("clients", "add", "research", "--scope", "system/*.rs", "--purpose", "secondary-use",
                    "--database", db).stdout
    assert "purpose: direct-care" in care and "purpose: secondary-use" in research
    clients = Clients(create_engine(db))
    for out, purpose in ((care, "direct-care"), (research, "secondary-use")):
        client_id = out.split("client_id: ")[1].splitlines()[0]
        assert clients.get(client_id).purpose == purpose  # type: ignore[union-attr]
    refused = subprocess.run([sys.executable, "-m", "carerecord.cli", "clients", "add", "x", "--scope", "system/*.rs",
                              "--purpose", "marketing", "--database", db], capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "marketing" in refused.stderr


def test_clients_token_mints_a_system_token_for_the_servers_audience(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 't.db'}"
    token = _run("clients", "token", "--scope", "system/*.rs", "--base-url", "http://127.0.0.1:9999/fhir",
                 "--database", db).stdout.strip()
    engine = create_engine(db)
    who = AccessTokens(engine, "http://127.0.0.1:9999", "http://127.0.0.1:9999/fhir").principal(token)
    assert who.kind.value == "system" and [s.text() for s in who.scopes.resources] == ["system/*.rs"]


def test_the_demo_community_has_a_sign_in_for_every_persona(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    _run("demo", "--no-serve", "--people", "3", "--jobs", "0", "--database", db)
    _run("demo", "--no-serve", "--people", "3", "--jobs", "0", "--database", db)  # idempotent
    engine = create_engine(db)
    users, directory = Users(engine), Directory(Repository(engine))
    roles, orgs = {}, {}
    for persona in PERSONAS:
        user = users.authenticate(persona.username, DEMO_PASSWORD)
        assert user is not None and user.kind == persona.kind, persona
        assert directory.resource(user.fhir_user) is not None, persona
        if user.kind == "staff":
            [choice] = directory.role_choices(user.fhir_user)
            assert choice.role is not None, persona
            roles[persona.username] = choice.role.key
            orgs[persona.username] = choice.organization
        if user.kind == "proxy":
            assert directory.granted_patients(user.grants) == ("Patient/demo-patient-000001",)
    assert roles == {"gp": "doctor", "ward-nurse": "nurse", "pharmacist": "pharmacist", "paramedic": "paramedic",
                     "care-worker": "care-worker", "receptionist": "receptionist",
                     "privacy-officer": "privacy-officer", "practice-privacy-officer": "privacy-officer",
                     "administrator": "administrator"}
    # each privacy officer reviews access to their own organisation's patients: the practice's
    # is the one whose queue shows a break-glass into a registered patient's record
    assert orgs["privacy-officer"] == "Organization/demo-org-hospital"
    assert orgs["practice-privacy-officer"] == "Organization/demo-org-gp0"
