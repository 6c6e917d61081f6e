"""Transaction and batch Bundles at the store level."""

from __future__ import annotations

import orjson
import pytest
from sqlalchemy import func, select

from carerecord.errors import Invalid, PreconditionFailed, Unprocessable
from carerecord.fhir import subsetted
from carerecord.store import schema
from carerecord.store.integrity import check_integrity
from carerecord.store.interactions import Interactions
from carerecord.store.repository import Repository
from carerecord.store.transaction import TransactionProcessor, stage

NHS = "https://fhir.nhs.uk/Id/nhs-number"


def patient(nhs: str = "9912003888", family: str = "Smith") -> dict[str, object]:
    return {"resourceType": "Patient", "identifier": [{"system": NHS, "value": nhs}],
            "name": [{"family": family}]}


def obs(subject: str) -> dict[str, object]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "Pulse"},
            "subject": {"reference": subject}}


def tx(*entries: dict[str, object], kind: str = "transaction") -> dict[str, object]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def count(repo: Repository) -> int:
    with repo.engine.connect() as c:
        return int(c.execute(select(func.count()).select_from(schema.resources)).scalar_one())


def test_urn_uuid_references_are_rewritten_to_assigned_ids(ix: Interactions, repo: Repository) -> None:
    out = orjson.loads(TransactionProcessor(ix).process(tx(
        {"fullUrl": "urn:uuid:obs", "resource": obs("urn:uuid:pat"),
         "request": {"method": "POST", "url": "Observation"}},
        {"fullUrl": "urn:uuid:pat", "resource": patient(),
         "request": {"method": "POST", "url": "Patient"}})))
    loc_obs, loc_pat = (e["response"]["location"] for e in out["entry"])
    assert out["type"] == "transaction-response"
    stored = orjson.loads(repo.read("Observation", loc_obs.split("/")[1]).content or b"")
    assert stored["subject"]["reference"] == "/".join(loc_pat.split("/")[:2])


def test_one_bad_entry_rolls_back_the_whole_transaction(ix: Interactions, repo: Repository) -> None:
    with pytest.raises(Invalid) as err:
        TransactionProcessor(ix).process(tx(
            {"resource": patient(), "request": {"method": "POST", "url": "Patient"}},
            {"resource": {**patient("9434765919"), "active": "yes"},
             "request": {"method": "POST", "url": "Patient"}}))
    assert err.value.issues[0].expression[0].startswith("Bundle.entry[1].resource.active")
    assert count(repo) == 0


def test_unresolved_urn_uuid_is_a_broken_reference(ix: Interactions, repo: Repository) -> None:
    with pytest.raises(Invalid) as err:
        TransactionProcessor(ix).process(tx(
            {"resource": obs("urn:uuid:nowhere"), "request": {"method": "POST", "url": "Observation"}}))
    assert "does not resolve" in err.value.issues[0].diagnostics
    assert err.value.issues[0].expression == ("Bundle.entry[0].resource.subject.reference",)
    assert count(repo) == 0


def test_conditional_reference_resolves_to_the_one_match(ix: Interactions, repo: Repository) -> None:
    pat = repo.create(patient())
    TransactionProcessor(ix).process(tx(
        {"resource": obs(f"Patient?identifier={NHS}|9912003888"),
         "request": {"method": "POST", "url": "Observation"}}))
    with repo.engine.connect() as c:
        ref = c.execute(select(schema.idx_reference.c.ref_id)).scalars().all()
    assert pat.res_id in ref


def test_if_none_exist_in_a_transaction_reuses_the_match(ix: Interactions, repo: Repository) -> None:
    pat = repo.create(patient())
    out = orjson.loads(TransactionProcessor(ix).process(tx(
        {"fullUrl": "urn:uuid:p", "resource": patient(),
         "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={NHS}|9912003888"}},
        {"resource": obs("urn:uuid:p"), "request": {"method": "POST", "url": "Observation"}})))
    assert out["entry"][0]["response"]["status"] == "200 OK"
    assert out["entry"][0]["response"]["location"].startswith(f"Patient/{pat.res_id}/")
    assert count(repo) == 2


def test_conditional_update_matching_two_is_412(ix: Interactions, repo: Repository) -> None:
    repo.create(patient(family="Twin"))
    repo.create(patient("9434765919", family="Twin"))
    with pytest.raises(PreconditionFailed):
        TransactionProcessor(ix).process(tx(
            {"resource": patient(family="Twin"), "request": {"method": "PUT", "url": "Patient?family=Twin"}}))


def test_entries_run_in_spec_order_delete_post_put_get(ix: Interactions, repo: Repository) -> None:
    old = repo.create(patient(family="Old"))
    out = orjson.loads(TransactionProcessor(ix, get=_reader(repo)).process(tx(
        {"request": {"method": "GET", "url": "Patient/fixed"}},
        {"resource": {**patient("9434765919", "Fixed"), "id": "fixed"},
         "request": {"method": "PUT", "url": "Patient/fixed"}},
        {"request": {"method": "DELETE", "url": f"Patient/{old.res_id}"}})))
    assert out["entry"][0]["resource"]["name"][0]["family"] == "Fixed"
    assert out["entry"][2]["response"]["status"] == "204 No Content"


def _reader(repo: Repository):  # type: ignore[no-untyped-def]
    def get(unit, url):  # type: ignore[no-untyped-def]
        t, i = url.split("/")
        return 200, unit.read(t, i).content
    return get


def test_batch_entries_succeed_or_fail_on_their_own(ix: Interactions, repo: Repository) -> None:
    out = orjson.loads(TransactionProcessor(ix).process(tx(
        {"resource": patient(), "request": {"method": "POST", "url": "Patient"}},
        {"resource": {**patient("9434765919"), "bogus": 1}, "request": {"method": "POST", "url": "Patient"}},
        kind="batch")))
    statuses = [e["response"]["status"] for e in out["entry"]]
    assert statuses[0] == "201 Created" and statuses[1].startswith("400")
    assert out["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert count(repo) == 1


def test_a_subsetted_copy_is_refused_even_when_a_caller_says_it_validated(ix: Interactions, repo: Repository) -> None:
    """Hazard H054: the rule is in the one step every write takes (``prepare``), so a route that
    validated the body itself (the API does, outside the lock) or staged it ahead (``load``
    staged templates) cannot skip it; nothing is written."""
    tag = {"system": subsetted.SYSTEM, "code": subsetted.CODE}
    copy = {**patient(), "meta": {"tag": [tag]}}
    with pytest.raises(Unprocessable) as err, repo.unit() as unit:
        unit.create(dict(copy), validated=True)
    assert err.value.issues[0].expression == ("Patient.meta.tag[0]",)
    with pytest.raises(Unprocessable), repo.unit() as unit:
        ix.update(unit, "Patient", "p1", {**copy, "id": "p1"}, validated=True)
    # a template staged by a worker process before the rule existed is still refused
    kind, entries = stage(tx({"resource": patient(), "request": {"method": "POST", "url": "Patient"}}),
                          repo.registry, templates=True)
    assert entries[0].template is not None
    entries[0].template = entries[0].template.replace(b'"meta":{', b'"meta":{"tag":[' + orjson.dumps(tag) + b'],', 1)
    with pytest.raises(Unprocessable) as err:
        TransactionProcessor(ix).process_staged(kind, entries)
    assert err.value.issues[0].expression == ("Bundle.entry[0].resource.meta.tag[0]",)
    assert count(repo) == 0


def test_check_reports_a_subsetted_copy_written_back_before_the_refusal(repo: Repository) -> None:
    """Hazard H054: a copy stored before writes refused it is found by ``carerecord check``."""
    stored = repo.create(patient())
    assert check_integrity(repo.engine)[0] == []
    doc = orjson.loads(stored.content or b"")
    doc["meta"]["tag"] = [{"system": subsetted.SYSTEM, "code": subsetted.CODE}]
    v = schema.resource_versions
    with repo.engine.begin() as c:  # as an older version of the server wrote it
        c.execute(v.update().where(v.c.res_type == "Patient", v.c.version == 1).values(content=orjson.dumps(doc)))
    problems = check_integrity(repo.engine)[0]
    assert problems == [f"Patient/{stored.res_id} version 1 is a SUBSETTED or REDACTED (summary or redacted) copy written back: "
                        "what it left out is in its earlier versions (hazard H054)"]
