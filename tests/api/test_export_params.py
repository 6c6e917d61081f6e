"""Hazard H055: the bulk export's ``_elements``, ``patient`` and ``includeAssociatedData``
parameters (http://hl7.org/fhir/uv/bulkdata/STU2/export.html#query-parameters), and
``_outputFormat`` and the CapabilityStatement's account of the parameters, over real HTTP.

Every expectation is computed here, independently of the server: which patients a resource
belongs to (:func:`belongs_to`: the Patient itself, and every ``Patient/x`` it refers to, the
way the test records are built), which Provenance point at which exported resource
(:func:`associated`), what ``_elements`` keeps (the element names listed here by hand)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import Engine

from carerecord.access.audit_store import AuditStore
from carerecord.fhir.subset import keep_elements, mark_subsetted
from carerecord.fhir.subsetted import SYSTEM as OBSERVATION_VALUE
from tests.api import test_export
from tests.api.conftest import outcome
from tests.api.test_export import (
    ASYNC,
    NDJSON,
    Worker,
    _client,
    _records,
    _secondary_use_token,
    _token,
    download,
    ids,
    kick_off,
    parameters,
    searched,
    wait,
)

workers = test_export.workers  # the fixtures: two application instances, and the world's records
world = test_export.world

LENIENT = {"Prefer": "respond-async, handling=lenient"}
RELEVANT = "RelevantProvenanceResources"
SUBSETTED_CODE = (OBSERVATION_VALUE, "SUBSETTED")


def _provenance(pid: str, *targets: str) -> dict[str, Any]:
    return {"resourceType": "Provenance", "id": pid, "target": [{"reference": t} for t in targets],
            "recorded": "2026-01-05T10:00:00Z", "agent": [{"who": {"reference": "Organization/org-1"}}]}


# Provenance of the test world: what each targets decides whether it is associated with an export
PROVENANCE = [
    _provenance("prov-a-obs", "Observation/obs-pat-a-0", "Observation/obs-pat-a-1"),  # in no compartment
    _provenance("prov-a-patient", "Patient/pat-a"),  # pat-a's compartment
    _provenance("prov-ab", "Observation/obs-pat-a-2", "Patient/pat-b"),  # pat-b's compartment
    _provenance("prov-ac", "Observation/obs-pat-a-4", "Patient/pat-c"),  # pat-c's (opted out)
    _provenance("prov-c", "Observation/obs-pat-c-0"),
    _provenance("prov-b-versioned", "Observation/obs-pat-b-0/_history/1"),
    _provenance("prov-org", "Organization/org-1"),
    _provenance("prov-shared", "Observation/obs-shared", "Condition/cond-pat-a", "Condition/cond-pat-b"),
]
DELETED = _provenance("prov-deleted", "Observation/obs-pat-a-3")
# an Observation in two patients' compartments (subject pat-a, performer pat-b)
SHARED = {"resourceType": "Observation", "id": "obs-shared", "status": "final", "code": {"text": "Heart rate"},
          "subject": {"reference": "Patient/pat-a"}, "performer": [{"reference": "Patient/pat-b"}],
          "valueQuantity": {"value": 70, "unit": "/min"}}


def records() -> list[dict[str, Any]]:
    """Every resource of the world, as written (the deleted Provenance left out)."""
    return [*_records(), SHARED, *PROVENANCE]


@pytest.fixture
def params_world(world: httpx.Client, workers: list[Worker], engine: Engine) -> Iterator[httpx.Client]:
    """test_export's world (pat-a, pat-b, pat-c who opted out; grp-1 of pat-a and pat-c) with an
    Observation shared by pat-a and pat-b, Provenance of several targets, and one deleted."""
    with _client(workers[0].base, _token(engine, workers[0].base, "system/*.cruds")) as writer:
        for r in [SHARED, *PROVENANCE, DELETED]:
            put = writer.put(f"/{r['resourceType']}/{r['id']}", json=r)
            assert put.status_code == 201, put.text
        assert writer.delete("/Provenance/prov-deleted").status_code in (200, 204)
    yield world


# -- the independent oracle -----------------------------------------------------------------------------
def _references(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return own + [r for v in node.values() for r in _references(v)]
    if isinstance(node, list):
        return [r for v in node for r in _references(v)]
    return []


def belongs_to(r: dict[str, Any]) -> set[str]:
    """The patients whose record ``r`` is part of: a Patient's own, and every patient it refers to."""
    own = {r["id"]} if r["resourceType"] == "Patient" else set()
    return own | {ref.split("/")[1] for ref in _references(r) if ref.startswith("Patient/")}


def key(r: dict[str, Any]) -> str:
    return f"{r['resourceType']}/{r['id']}"


def associated(exported: list[dict[str, Any]]) -> set[str]:
    """The ids of the Provenance of the world that target one of the ``exported`` (non-Provenance) resources."""
    keys = {key(r) for r in exported if r["resourceType"] != "Provenance"}
    return {p["id"] for p in PROVENANCE
            if any(re.sub(r"/_history/.*$", "", t["reference"]) in keys for t in p["target"])}


def everything(exported: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [r for rs in exported.values() for r in rs]


def post(c: httpx.Client, path: str, *entries: dict[str, Any], headers: dict[str, str] = ASYNC) -> httpx.Response:
    return c.post(path, headers=headers, json={"resourceType": "Parameters", "parameter": list(entries)})


def string(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "valueString": value}


def patient(ref: str) -> dict[str, Any]:
    return {"name": "patient", "valueReference": {"reference": ref}}


def run(c: httpx.Client, r: httpx.Response) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """The manifest and the exported resources of a kick-off answered 202."""
    assert r.status_code == 202, r.text
    manifest = wait(c, r.headers["content-location"])
    return manifest, download(c, manifest)


def audited(engine: Engine, before: Any) -> list[str]:
    """The patients the export jobs audited since ``before`` (sorted, with repeats)."""
    return sorted(e.patient for e in AuditStore(engine).since(before) if e.patient and '"op":"export"' in e.content)


def tagged_once(r: dict[str, Any]) -> bool:
    return [(t["system"], t["code"]) for t in r.get("meta", {}).get("tag", [])].count(SUBSETTED_CODE) == 1


# -- the shared subsetting ----------------------------------------------------------------------------------
def test_elements_are_named_by_element_name_or_json_key_and_keep_mandatory_ones() -> None:
    obs = {"resourceType": "Observation", "id": "o", "meta": {"versionId": "1"}, "status": "final",
           "_status": {"extension": [{"url": "http://example.org/x", "valueString": "y"}]},
           "code": {"text": "x"}, "subject": {"reference": "Patient/p"}, "valueQuantity": {"value": 1},
           "note": [{"text": "n"}]}
    assert set(keep_elements(obs, ["value"])) == {"resourceType", "id", "meta", "status", "_status", "code",
                                                 "valueQuantity"}
    assert keep_elements(obs, ["value[x]"]) == keep_elements(obs, ["valueQuantity"]) == keep_elements(obs, ["value"])
    assert set(keep_elements(obs, ["note"])) == {"resourceType", "id", "meta", "status", "_status", "code", "note"}
    marked = mark_subsetted(mark_subsetted(keep_elements(obs, ["note"])))
    assert tagged_once(marked) and marked["meta"]["versionId"] == "1"


# -- _elements -------------------------------------------------------------------------------------------------
def test_elements_keep_the_listed_and_mandatory_elements_of_each_exported_resource_marked_subsetted(
        params_world: httpx.Client) -> None:
    c = params_world
    whole = {t: searched(c, f"/{t}?_count=50") for t in ("Patient", "Observation", "Condition")}
    # by hand: Patient has no mandatory element; Observation's are status and code; Condition's none
    keeps = {"Patient": {"resourceType", "id", "meta", "birthDate", "name"},
             "Observation": {"resourceType", "id", "meta", "status", "code", "valueQuantity"},
             "Condition": {"resourceType", "id", "meta", "subject"}}
    for r in (c.get("/$export", params={"_type": "Patient,Observation,Condition",
                                        "_elements": "name,Patient.birthDate,Observation.value,Condition.subject"},
                    headers=ASYNC),
              post(c, "/$export", string("_type", "Patient,Observation,Condition"),
                   string("_elements", "name,Patient.birthDate"), string("_elements", "Observation.value"),
                   string("_elements", "Condition.subject"))):
        _, exported = run(c, r)
        assert set(exported) == set(keeps)
        for res_type, resources in exported.items():
            assert ids(resources) == set(whole[res_type]), res_type  # the same resources, each cut down
            for got in resources:
                assert tagged_once(got), got
                full = whole[res_type][got["id"]]
                expected = {k: v for k, v in full.items() if k in keeps[res_type] and k != "meta"}
                assert {k: v for k, v in got.items() if k != "meta"} == expected, got
                assert {k: v for k, v in got["meta"].items() if k != "tag"} == \
                    {k: v for k, v in full["meta"].items() if k != "tag"}
    plain = download(c, wait(c, kick_off(c, "/$export", _type="Patient")))
    assert not any(tagged_once(p) for p in plain["Patient"])  # without _elements: whole, unmarked


@pytest.mark.parametrize(("elements", "problem"), [
    ("Patient.name.given", "root elements only"),
    ("Nonsense.id", "Nonsense is not a FHIR R4 resource type"),
    ("Observation.name", "Observation has no element name"),
    ("flavour", "has an element flavour"),
    ("Condition.code", "this export holds no Condition"),
    ("name,Patient.resourceType", "Patient has no element resourceType"),
])
def test_an_element_the_export_cannot_have_is_a_400_naming_it_or_ignored_and_reported_when_lenient(
        elements: str, problem: str, params_world: httpx.Client) -> None:
    c = params_world
    query = {"_type": "Patient,Observation", "_elements": elements}
    issue = outcome(c.get("/$export", params=query, headers=ASYNC), 400, "invalid", "_elements")
    assert problem in issue["diagnostics"]
    r = post(c, "/Patient/$export", string("_type", "Patient,Observation"), string("_elements", elements))
    outcome(r, 400, "invalid", "Parameters.parameter[1].valueString")
    lenient = c.get("/$export", params=query, headers=LENIENT)
    assert lenient.status_code == 202, lenient.text
    warnings = [i for i in lenient.json()["issue"] if i["severity"] == "warning"]
    assert len(warnings) == 1 and problem in warnings[0]["diagnostics"] and "ignored" in warnings[0]["diagnostics"]
    exported = download(c, wait(c, lenient.headers["content-location"]))
    kept_name = "," in elements  # "name" was fine and is applied; the rest is ignored: whole resources
    assert all(tagged_once(p) == kept_name for p in exported["Patient"])
    assert all(("managingOrganization" in p) != kept_name for p in exported["Patient"])


# -- patient ---------------------------------------------------------------------------------------------------
def test_patient_restricts_a_patient_export_to_the_listed_patients_and_audits_exactly_them(
        params_world: httpx.Client, engine: Engine, workers: list[Worker]) -> None:
    c = params_world
    types = {"Patient", "Observation", "Condition", "Consent"}
    for listed in (["Patient/pat-a"], ["Patient/pat-a", "Patient/pat-c", "Patient/no-such-patient"],
                   [f"{workers[0].base}/Patient/pat-b"]):
        wanted = {ref.split("/")[-1] for ref in listed}
        expected = {key(r) for r in records() if r["resourceType"] in types and belongs_to(r)
                    and belongs_to(r) <= wanted}
        before = AuditStore(engine).position()
        _, exported = run(c, post(c, "/Patient/$export", string("_type", ",".join(sorted(types))),
                                  *[patient(p) for p in listed]))
        assert {key(r) for r in everything(exported)} == expected, listed
        assert "Observation/obs-shared" not in expected  # pat-a's and pat-b's: never with one of them alone
        assert audited(engine, before) == sorted(wanted & {"pat-a", "pat-b", "pat-c"}), listed


def test_patient_on_a_group_export_keeps_the_listed_current_members_only(params_world: httpx.Client) -> None:
    c = params_world
    # grp-1: pat-a and pat-c; pat-b's membership is inactive, so listing pat-b adds nothing
    _, exported = run(c, post(c, "/Group/grp-1/$export", string("_type", "Patient,Observation,Condition"),
                              patient("Patient/pat-a"), patient("Patient/pat-b")))
    expected = {key(r) for r in records() if r["resourceType"] in {"Patient", "Observation", "Condition"}
                and belongs_to(r) and belongs_to(r) <= {"pat-a"}}
    assert {key(r) for r in everything(exported)} == expected
    _, nobody = run(c, post(c, "/Group/grp-1/$export", patient("Patient/pat-b")))
    assert nobody == {}
    _, whole_group = run(c, post(c, "/Group/grp-1/$export", string("_type", "Patient")))
    assert ids(whole_group["Patient"]) == {"pat-a", "pat-c"}  # without patient: the Group as before


def test_a_patient_the_client_may_not_see_contributes_nothing_exactly_as_an_unknown_one(
        params_world: httpx.Client, engine: Engine, workers: list[Worker]) -> None:
    """pat-c has the national data opt-out: a secondary-use client listing pat-c gets what
    listing an id that does not exist gets (the answer, the manifest, the audit); a
    direct-care client listing pat-c gets pat-c's record, so the comparison is not empty."""
    base = workers[0].base
    answers = {}
    with _client(base, _secondary_use_token(engine, base)) as research:
        for who in ("pat-c", "pat-nobody"):
            for path in ("/Patient/$export", "/Group/grp-1/$export"):
                before = AuditStore(engine).position()
                r = post(research, path, patient(f"Patient/{who}"), string("includeAssociatedData", RELEVANT))
                assert r.status_code == 202, r.text
                body = r.json()
                manifest, exported = run(research, r)
                assert exported == {} and audited(engine, before) == []
                answers[who, path] = (r.status_code, [(i["severity"], i["code"]) for i in body["issue"]],
                                      manifest["output"], manifest["error"], manifest["extension"])
    for path in ("/Patient/$export", "/Group/grp-1/$export"):
        assert answers["pat-c", path] == answers["pat-nobody", path], path
    _, direct = run(c := params_world, post(c, "/Patient/$export", patient("Patient/pat-c")))
    assert {key(r) for r in everything(direct)} >= {"Patient/pat-c", "Observation/obs-pat-c-0", "Consent/optout-c"}


@pytest.mark.parametrize(("path", "entries", "headers", "expression"), [
    ("/$export", [patient("Patient/pat-a")], ASYNC, "Parameters.parameter[0].valueReference"),
    ("/$export", [patient("Patient/pat-a")], LENIENT, "Parameters.parameter[0].valueReference"),
    ("/Patient/$export", [string("_type", "Patient"), patient("Organization/org-1")], ASYNC,
     "Parameters.parameter[1].valueReference"),
    ("/Patient/$export", [patient("http://elsewhere.example/fhir/Patient/pat-a")], LENIENT,
     "Parameters.parameter[0].valueReference"),
    ("/Patient/$export", [{"name": "patient", "valueString": "Patient/pat-a"}], ASYNC, "Parameters.parameter[0]"),
    ("/Group/grp-1/$export", [{"name": "patient", "valueReference": {"identifier": {"value": "x"}}}], ASYNC,
     "Parameters.parameter[0]"),
])
def test_a_patient_parameter_that_cannot_narrow_the_export_is_refused_even_when_lenient(
        path: str, entries: list[dict[str, Any]], headers: dict[str, str], expression: str,
        params_world: httpx.Client) -> None:
    outcome(post(params_world, path, *entries, headers=headers), 400, "invalid", expression)


@pytest.mark.parametrize("headers", [ASYNC, LENIENT])
def test_patient_in_a_query_string_is_refused_rather_than_ignored(headers: dict[str, str],
                                                                   params_world: httpx.Client) -> None:
    for path in ("/Patient/$export", "/Group/grp-1/$export"):
        outcome(params_world.get(path, params={"patient": "Patient/pat-a"}, headers=headers), 400, "invalid",
                "patient")


# -- includeAssociatedData -------------------------------------------------------------------------------------
def test_relevant_provenance_adds_each_provenance_of_an_exported_resource_once(
        params_world: httpx.Client, engine: Engine) -> None:
    c = params_world
    kick_offs = [lambda: c.get("/$export", params={"_type": "Observation", "includeAssociatedData": RELEVANT},
                               headers=ASYNC),
                 lambda: post(c, "/$export", string("_type", "Observation"),
                              {"name": "includeAssociatedData", "valueCode": RELEVANT})]
    for kick in kick_offs:
        before = AuditStore(engine).position()
        manifest, exported = run(c, kick())
        observations = exported["Observation"]
        assert ids(observations) == {key(o).split("/")[1] for o in records() if o["resourceType"] == "Observation"}
        expected = associated(observations)
        assert expected == {"prov-a-obs", "prov-ab", "prov-ac", "prov-c", "prov-b-versioned", "prov-shared"}
        provenance = exported["Provenance"]
        assert sorted(p["id"] for p in provenance) == sorted(expected)  # each once; not the deleted one
        assert {o["type"] for o in manifest["output"]} == {"Observation", "Provenance"}
        # every patient whose record went out: the Observations' and the Provenance's
        assert sorted(set(audited(engine, before))) == sorted(
            {p for x in [*observations, *provenance] for p in belongs_to(x)})
    # with Provenance among the types too: still each once, and the unassociated ones as the type holds them
    _, both = run(c, c.get("/$export", params={"_type": "Observation,Provenance", "includeAssociatedData": RELEVANT},
                           headers=ASYNC))
    assert sorted(p["id"] for p in both["Provenance"]) == sorted(p["id"] for p in PROVENANCE)
    _, without = run(c, c.get("/$export", params={"_type": "Condition"}, headers=ASYNC))
    assert set(without) == {"Condition"}  # not asked for: none


def test_relevant_provenance_is_held_to_the_patient_list_and_to_the_guard(
        params_world: httpx.Client, engine: Engine, workers: list[Worker]) -> None:
    c = params_world
    _, only_a = run(c, post(c, "/Patient/$export", string("_type", "Observation,Condition"),
                            string("includeAssociatedData", RELEVANT), patient("Patient/pat-a")))
    main = [r for r in everything(only_a) if r["resourceType"] != "Provenance"]
    assert {key(r) for r in main} == {key(r) for r in records() if r["resourceType"] in ("Observation", "Condition")
                                      and belongs_to(r) == {"pat-a"}}
    # associated, and of nobody's record but pat-a's (prov-ab is pat-b's, prov-ac pat-c's)
    expected = {p for p in associated(main) if belongs_to(next(x for x in PROVENANCE if x["id"] == p)) <= {"pat-a"}}
    assert expected == {"prov-a-obs", "prov-shared"}  # prov-shared is in no compartment
    assert ids(only_a["Provenance"]) == expected
    base = workers[0].base
    with _client(base, _secondary_use_token(engine, base)) as research:
        _, exported = run(research, research.get("/$export", params={
            "_type": "Observation", "includeAssociatedData": RELEVANT}, headers=ASYNC))
    seen = [r for r in everything(exported) if r["resourceType"] != "Provenance"]
    assert "pat-c" not in {p for r in seen for p in belongs_to(r)}
    expected = {p for p in associated(seen) if "pat-c" not in belongs_to(next(x for x in PROVENANCE if x["id"] == p))}
    assert "prov-ac" not in expected and "prov-a-obs" in expected
    assert ids(exported["Provenance"]) == expected  # prov-ac targets pat-a's Observation but is pat-c's


@pytest.mark.parametrize(("value", "lenient_ok"), [
    ("LatestProvenanceResources", True),
    ("_carerecordEverything", True),
    ("RelevantProvenanceResources,LatestProvenanceResources", True),
    ("Provenance", False),
    ("relevantprovenanceresources", False),
])
def test_an_include_associated_data_value_this_server_does_not_support_is_a_400_naming_it(
        value: str, lenient_ok: bool, params_world: httpx.Client) -> None:
    c = params_world
    query = {"_type": "Observation", "includeAssociatedData": value}
    issue = outcome(c.get("/$export", params=query, headers=ASYNC), 400, "invalid", "includeAssociatedData")
    assert value.split(",")[-1] in issue["diagnostics"]
    outcome(post(c, "/$export", string("_type", "Observation"), string("includeAssociatedData", value)), 400,
            "invalid", "Parameters.parameter[1].valueString")
    r = c.get("/$export", params=query, headers=LENIENT)
    if not lenient_ok:  # not a value of the specification: a bad request, lenient or not
        outcome(r, 400, "invalid", "includeAssociatedData")
        return
    assert r.status_code == 202, r.text
    [warning] = [i for i in r.json()["issue"] if i["severity"] == "warning"]
    assert value.split(",")[-1] in warning["diagnostics"] and "ignored" in warning["diagnostics"]
    exported = download(c, wait(c, r.headers["content-location"]))
    assert ("Provenance" in exported) == value.startswith(RELEVANT)


def test_relevant_provenance_needs_the_scopes_to_export_provenance(
        params_world: httpx.Client, engine: Engine, workers: list[Worker]) -> None:
    base = workers[0].base
    with _client(base, _token(engine, base, "system/Observation.rs")) as c:
        outcome(c.get("/$export", params={"includeAssociatedData": RELEVANT}, headers=ASYNC), 403, "forbidden")
        outcome(c.get("/$export", params={"includeAssociatedData": RELEVANT}, headers=LENIENT), 403, "forbidden")
    with _client(base, _token(engine, base, "system/Observation.rs system/Provenance.rs")) as c:
        _, exported = run(c, c.get("/$export", params={"_type": "Observation", "includeAssociatedData": RELEVANT},
                                   headers=ASYNC))
        assert ids(exported["Provenance"]) == associated(exported["Observation"])


def test_elements_apply_to_the_associated_provenance_too(params_world: httpx.Client) -> None:
    c = params_world
    _, exported = run(c, c.get("/$export", params={"_type": "Observation", "includeAssociatedData": RELEVANT,
                                                   "_elements": "Observation.subject,Provenance.target"},
                               headers=ASYNC))
    for p in exported["Provenance"]:  # target, recorded and agent are Provenance's mandatory elements
        assert set(p) == {"resourceType", "id", "meta", "target", "recorded", "agent"} and tagged_once(p)
    for o in exported["Observation"]:
        assert set(o) == {"resourceType", "id", "meta", "status", "code", "subject"} and tagged_once(o)


# -- _outputFormat and the CapabilityStatement ---------------------------------------------------------------
@pytest.mark.parametrize(("value", "media"), [(NDJSON, NDJSON), ("application/ndjson", "application/ndjson"),
                                              ("ndjson", NDJSON)])
def test_the_three_ndjson_output_formats_are_accepted(value: str, media: str, params_world: httpx.Client) -> None:
    c = params_world
    manifest = wait(c, kick_off(c, "/$export", _type="Patient", _outputFormat=value))
    [item] = manifest["output"]
    r = c.get(item["url"])
    assert r.status_code == 200 and r.headers["content-type"].startswith(media)
    assert {orjson.loads(line)["id"] for line in r.content.splitlines()} == {"pat-a", "pat-b", "pat-c"}


@pytest.mark.parametrize("value", ["application/fhir+json", "text/csv", "", "ndjson; charset=utf-8", "NDJSONX"])
def test_any_other_output_format_is_a_400(value: str, params_world: httpx.Client) -> None:
    for headers in (ASYNC, LENIENT):
        outcome(params_world.get("/$export", params={"_outputFormat": value}, headers=headers), 400, "invalid",
                "_outputFormat")


def _named(documentation: str) -> set[str]:
    listed = documentation.split("Supported parameters: ", 1)[1].split(". ", 1)[0]
    return {re.sub(r" \(.*\)$", "", p.strip()) for p in re.split(r",\s*(?![^()]*\))", listed)}


SAMPLES = {"_outputFormat": ("valueString", "ndjson"), "_since": ("valueInstant", "2000-01-01T00:00:00Z"),
           "_type": ("valueString", "Patient"), "_typeFilter": ("valueString", "Patient?gender=female"),
           "_elements": ("valueString", "id"), "includeAssociatedData": ("valueCode", RELEVANT),
           "patient": ("valueReference", {"reference": "Patient/pat-a"})}


def test_the_capability_statement_lists_exactly_the_export_parameters_the_server_accepts(
        params_world: httpx.Client) -> None:
    c = params_world
    cap = c.get("/metadata").json()
    rest = cap["rest"][0]
    [system] = [op for op in rest["operation"] if op["name"] == "export"]
    ops = {"/$export": system}
    for t, path in (("Patient", "/Patient/$export"), ("Group", "/Group/grp-1/$export")):
        [entry] = [r for r in rest["resource"] if r["type"] == t]
        [ops[path]] = [op for op in entry["operation"] if op["name"] == "export"]
    common = {"_outputFormat", "_since", "_type", "_typeFilter", "_elements", "includeAssociatedData"}
    assert _named(ops["/$export"]["documentation"]) == common
    assert _named(ops["/Patient/$export"]["documentation"]) == _named(ops["/Group/grp-1/$export"]["documentation"]) \
        == common | {"patient"}
    assert "RelevantProvenanceResources" in system["documentation"]
    assert "LatestProvenanceResources" not in system["documentation"]
    for path, op in ops.items():  # each listed parameter is accepted there, and patient is refused where not listed
        for name in sorted(_named(op["documentation"])):
            r = c.post(path, headers=ASYNC, json=parameters((name, *SAMPLES[name])))  # type: ignore[arg-type]
            assert r.status_code == 202, (path, name, r.text)
            wait(c, r.headers["content-location"])
        if "patient" not in _named(op["documentation"]):
            outcome(c.post(path, headers=ASYNC, json=parameters(("patient", *SAMPLES["patient"]))),  # type: ignore[arg-type]
                    400, "invalid")
        outcome(c.get(path, params={"organizeOutputBy": "Patient"}, headers=ASYNC), 400, "invalid", "organizeOutputBy")
