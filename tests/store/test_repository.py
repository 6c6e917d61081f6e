"""The repository on a real database: versions, deletes, locking, validation, compartments."""

from __future__ import annotations

import orjson
import pytest
from sqlalchemy import func, select

from carerecord.errors import Conflict, Gone, Invalid, NotFound, PreconditionFailed, Unprocessable
from carerecord.store import schema
from carerecord.store.history import history
from carerecord.store.interactions import Interactions
from carerecord.store.repository import Repository

PATIENT = {"resourceType": "Patient", "name": [{"family": "Smith", "given": ["Ann"]}],
           "birthDate": "1950-02-03",
           "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9912003888"}]}


def rows(repo: Repository, table: schema.Table) -> int:
    with repo.engine.connect() as c:
        return int(c.execute(select(func.count()).select_from(table)).scalar_one())


def test_create_assigns_id_version_and_last_updated(repo: Repository) -> None:
    st = repo.create(dict(PATIENT))
    doc = orjson.loads(st.content or b"")
    assert doc["id"] == st.res_id and doc["meta"]["versionId"] == "1"
    assert doc["meta"]["lastUpdated"].endswith("Z")
    assert list(doc)[:3] == ["resourceType", "id", "meta"]


def test_read_serves_the_stored_bytes_unchanged(repo: Repository) -> None:
    st = repo.create(dict(PATIENT))
    assert repo.read("Patient", st.res_id).content == st.content


def test_every_version_is_kept_and_readable(repo: Repository) -> None:
    st = repo.create(dict(PATIENT))
    for family in ("Smythe", "Smithson"):
        repo.update("Patient", st.res_id, {**PATIENT, "id": st.res_id, "name": [{"family": family}]})
    assert repo.read("Patient", st.res_id).version == 3
    names = [orjson.loads(repo.vread("Patient", st.res_id, v).content or b"")["name"][0]["family"]
             for v in (1, 2, 3)]
    assert names == ["Smith", "Smythe", "Smithson"]


def test_update_with_client_chosen_id_creates(repo: Repository) -> None:
    st, created = repo.update("Patient", "pat-1", {**PATIENT, "id": "pat-1"})
    assert created and st.version == 1 and st.res_id == "pat-1"


def test_stale_if_match_is_412_and_changes_nothing(repo: Repository) -> None:
    st = repo.create(dict(PATIENT))
    repo.update("Patient", st.res_id, {**PATIENT, "id": st.res_id, "gender": "female"}, if_match=1)
    with pytest.raises(PreconditionFailed):
        repo.update("Patient", st.res_id, {**PATIENT, "id": st.res_id, "gender": "male"}, if_match=1)
    assert orjson.loads(repo.read("Patient", st.res_id).content or b"")["gender"] == "female"


def test_delete_makes_read_gone_and_keeps_history(repo: Repository) -> None:
    st = repo.create(dict(PATIENT))
    repo.delete("Patient", st.res_id)
    with pytest.raises(Gone):
        repo.read("Patient", st.res_id)
    page = history(repo.engine, "Patient", st.res_id)
    assert [(e.version, e.deleted) for e in page.entries] == [(2, True), (1, False)]
    assert rows(repo, schema.idx_string) == 0 and rows(repo, schema.compartments) == 0


def test_deleted_resource_can_be_recreated_by_update(repo: Repository) -> None:
    st = repo.create(dict(PATIENT))
    repo.delete("Patient", st.res_id)
    st3, created = repo.update("Patient", st.res_id, {**PATIENT, "id": st.res_id})
    assert created and st3.version == 3


def test_unknown_resource_is_not_found(repo: Repository) -> None:
    with pytest.raises(NotFound):
        repo.read("Patient", "nobody")
    with pytest.raises(NotFound):
        repo.vread("Patient", "nobody", 1)


def test_invalid_resource_is_rejected_and_nothing_is_written(repo: Repository) -> None:
    with pytest.raises(Invalid) as err:
        repo.create({**PATIENT, "favouriteColour": "blue"})
    assert err.value.issues[0].expression == ("Patient.favouriteColour",)
    with pytest.raises(Unprocessable) as err2:
        repo.create({**PATIENT, "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number",
                                                "value": "9912003889"}]})
    assert err2.value.issues[0].expression == ("Patient.identifier[0].value",)
    assert rows(repo, schema.resources) == 0 and rows(repo, schema.resource_versions) == 0


def test_update_replaces_index_rows_so_old_values_are_not_found(repo: Repository) -> None:
    st = repo.create(dict(PATIENT))
    before = rows(repo, schema.idx_string)
    repo.update("Patient", st.res_id, {**PATIENT, "id": st.res_id, "name": [{"family": "Jones"}]})
    with repo.engine.connect() as c:
        values = set(c.execute(select(schema.idx_string.c.value)).scalars())
    assert "jones" in values and "smith" not in values
    assert rows(repo, schema.idx_string) <= before


def test_observation_is_stored_in_its_patients_compartment(repo: Repository, ix: Interactions) -> None:
    with repo.unit() as u:
        p = ix.create(u, dict(PATIENT), "Patient").stored
        assert p is not None
        ix.create(u, {"resourceType": "Observation", "status": "final",
                      "code": {"text": "Weight"}, "subject": {"reference": f"Patient/{p.res_id}"}},
                  "Observation")
    with repo.engine.connect() as c:
        comp = c.execute(select(schema.resources.c.res_type, schema.resources.c.patient_id)
                         .order_by(schema.resources.c.rid)).all()
    assert [tuple(r) for r in comp] == [("Patient", p.res_id), ("Observation", p.res_id)]


def test_reference_to_a_missing_resource_is_refused(repo: Repository, ix: Interactions) -> None:
    with pytest.raises(Invalid) as err:
        with repo.unit() as u:
            ix.create(u, {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                          "subject": {"reference": "Patient/ghost"}}, "Observation")
    assert err.value.issues[0].code == "not-found"
    assert err.value.issues[0].expression == ("Observation.subject.reference",)
    assert rows(repo, schema.resources) == 0


def test_creating_the_same_id_twice_in_one_unit_is_a_conflict(repo: Repository) -> None:
    with pytest.raises(Conflict):
        with repo.unit() as u:
            u.create(dict(PATIENT), "same")
            u.create(dict(PATIENT), "same")
    assert rows(repo, schema.resources) == 0


def test_a_failure_mid_write_leaves_no_partial_record(repo: Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection: the index insert fails after the resource and version rows are in."""
    from carerecord.store.repository import Unit

    def boom(self: Unit, pairs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Unit, "_insert_indexes", boom)
    with pytest.raises(RuntimeError):
        repo.create(dict(PATIENT))
    for table in (schema.resources, schema.resource_versions, schema.idx_string, schema.compartments):
        assert rows(repo, table) == 0


def test_resource_breaking_a_uk_core_extension_definition_is_422(repo: Repository) -> None:
    """UK Core says EthnicCategory holds a CodeableConcept; a string there is refused on write."""
    bad = {"resourceType": "Patient",
           "meta": {"profile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"]},
           "extension": [{"url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory",
                          "valueString": "British"}]}
    with pytest.raises(Unprocessable) as err:
        repo.create(bad)
    assert err.value.issues[0].expression == ("Patient.extension[0].valueString",)
    assert rows(repo, schema.resources) == 0
