"""A real FHIR client from PyPI (``fhirclient``, SMART on FHIR's Python client, R4 models)
works against the live server: it reads the CapabilityStatement into its strict models, then
creates, reads, updates, searches, deletes and pages history."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fhirclient import client as smart_client
from fhirclient.models.bundle import Bundle
from fhirclient.models.fhirabstractbase import FHIRValidationError
from fhirclient.models.humanname import HumanName
from fhirclient.models.identifier import Identifier
from fhirclient.models.observation import Observation
from fhirclient.models.patient import Patient
from fhirclient.server import FHIRNotFoundException, FHIRServer
from requests import HTTPError

from tests.api.conftest import NHS, base


@pytest.fixture
def server(client: httpx.Client) -> Iterator[FHIRServer]:
    """fhirclient's server object on the emptied database (``client`` empties it)."""
    smart = smart_client.FHIRClient(settings={"app_id": "carerecord-tests", "api_base": base(client) + "/"})
    smart.prepare()
    assert smart.ready
    smart.server.session.headers["Authorization"] = client.headers["Authorization"]  # the system token
    yield smart.server
    smart.server.session.close()


def new_patient(family: str) -> Patient:
    p = Patient()
    name = HumanName()
    name.family = family
    name.given = ["Alex"]
    p.name = [name]
    ident = Identifier()
    ident.system = NHS
    ident.value = "9000000009"
    p.identifier = [ident]
    p.active = True
    return p


def test_fhirclient_parses_the_capability_statement_with_its_strict_models(server: FHIRServer) -> None:
    cs = server.capabilityStatement
    assert cs.fhirVersion == "4.0.1"
    patient = [r for r in cs.rest[0].resource if r.type == "Patient"][0]
    assert {"read", "create", "update", "delete", "history-instance"} <= {i.code for i in patient.interaction}


def test_fhirclient_creates_reads_updates_and_deletes(server: FHIRServer) -> None:
    created = new_patient("Client").create(server)
    assert created["meta"]["versionId"] == "1"
    pid = created["id"]

    read = Patient.read(pid, server)
    assert read.name[0].family == "Client"
    assert read.identifier[0].value == "9000000009"
    assert read.meta.versionId == "1"

    read.gender = "female"
    updated = read.update()
    assert updated["meta"]["versionId"] == "2" and updated["gender"] == "female"
    assert Patient.read(pid, server).gender == "female"

    obs = Observation({"status": "final", "code": {"text": "Pulse"},
                       "subject": {"reference": f"Patient/{pid}"},
                       "valueQuantity": {"value": 72, "unit": "/min"}})
    made = obs.create(server)
    assert Observation.read(made["id"], server).valueQuantity.value == 72

    found = Patient.where({"_id": pid}).perform_resources_iter(server)
    assert [p.id for p in found] == [pid]

    read.delete()
    with pytest.raises(HTTPError) as gone:
        Patient.read(pid, server)
    assert gone.value.response.status_code == 410
    with pytest.raises(FHIRNotFoundException):
        Patient.read("no-such-patient", server)


def test_fhirclient_pages_history_to_the_end(server: FHIRServer) -> None:
    first = Patient.read(new_patient("Paged").create(server)["id"], server)
    for gender in ("male", "female", "other", "unknown"):
        first.gender = gender
        first.update()
    for family in ("Two", "Three"):
        new_patient(family).create(server)
    page = Bundle.read_from("Patient/_history?_count=2", server)
    seen: list[tuple[str, str]] = []
    pages = 0
    while True:
        pages += 1
        assert page.type == "history"
        seen += [(e.resource.id, e.resource.meta.versionId) for e in page.entry]
        nxt = [link.url for link in page.link or [] if link.relation == "next"]
        if not nxt:
            break
        page = Bundle.read_from(nxt[0], server)
    assert pages == 4
    assert len(seen) == 7 and len(set(seen)) == 7
    assert sorted(v for i, v in seen if i == first.id) == ["1", "2", "3", "4", "5"]

    instance = Bundle.read_from(f"Patient/{first.id}/_history", server)
    assert instance.total == 5
    assert [e.request.method for e in instance.entry] == ["PUT"] * 4 + ["POST"]


def test_fhirclient_sees_validation_failures_as_http_errors(server: FHIRServer) -> None:
    bad = new_patient("Bad")
    bad.identifier[0].value = "1234567890"
    with pytest.raises(HTTPError) as err:
        bad.create(server)
    assert err.value.response.status_code == 422
    outcome = err.value.response.json()
    assert outcome["issue"][0]["expression"] == ["Patient.identifier[0].value"]
    with pytest.raises(FHIRValidationError):
        Patient({"resourceType": "Patient", "foo": 1})  # the client's own models refuse it too
