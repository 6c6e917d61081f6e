"""FHIR Bulk Data export (http://hl7.org/fhir/uv/bulkdata/STU2/export.html) over real HTTP, on
two "workers" (two application instances sharing the database and the data directory, as
uvicorn's worker processes do): kick-off, status, manifest, files, deletion; who may export and
who may see a job; the national data opt-out for secondary use; the audit trail; interruption."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from sqlalchemy import Engine

from carerecord.access.audit_store import AuditStore
from carerecord.access.clients import Clients
from carerecord.access.grants import Grantee
from carerecord.access.principal import Purpose
from carerecord.access.tokens import AccessTokens, mint_system_token
from carerecord.api.app import create_app
from carerecord.api.audit import writer_of
from carerecord.config import Settings
from carerecord.services.export import Exports, runner
from carerecord.services.export.runner import PG_MARGIN_US
from carerecord.store.repository import Repository
from tests.api.conftest import JSON, outcome
from tests.conftest import _free_port, wipe

NDJSON = "application/fhir+ndjson"
ASYNC = {"Prefer": "respond-async"}
OPT_OUT = {"coding": [{"system": "https://carerecord.org/fhir/CodeSystem/consent-category",
                       "code": "national-data-opt-out"}]}
FILE_BYTES = 3000  # small, so a type's resources are split over several files


@dataclass
class Worker:
    base: str
    exports: Exports
    app: Any


def _serve(app: Any, port: int) -> Iterator[None]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "test server did not start"
        time.sleep(0.02)
    yield
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def workers(engine: Engine, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Worker]]:
    """Two application instances on one database and one data directory, as two uvicorn workers
    (they share no memory: only the database and the export folders). Both serve the first's
    address as their public base URL, as workers behind one address do."""
    data = tmp_path_factory.mktemp("export-data")
    ports = [_free_port(), _free_port()]
    base = f"http://127.0.0.1:{ports[0]}/fhir"
    apps = [create_app(Settings(database=database_url, host="127.0.0.1", port=ports[0], base_url=base,
                                data_dir=data, export_file_bytes=FILE_BYTES, export_workers=1),
                       Repository(engine)) for _ in ports]
    servers = [_serve(app, port) for app, port in zip(apps, ports, strict=True)]
    for s in servers:
        next(s)
    yield [Worker(f"http://127.0.0.1:{port}/fhir", app.state.exports, app) for app, port in zip(apps, ports, strict=True)]
    for app, s in zip(apps, servers, strict=True):
        app.state.exports.close()
        next(s, None)


def _token(engine: Engine, base: str, scope: str = "system/*.rs", client_id: str = "exporter",
           purpose: Purpose = Purpose.DIRECT_CARE) -> str:
    return mint_system_token(engine, scope, audience=base, client_id=client_id, purpose=purpose)


def _person(engine: Engine, base: str, grantee: Grantee, scope: str) -> str:
    return AccessTokens(engine, base.removesuffix("/fhir"), base).mint("people", scope, grantee, 300)[0]


def _client(base: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=base, timeout=30, headers={"Accept": JSON, "Authorization": f"Bearer {token}"})


@pytest.fixture
def world(workers: list[Worker], engine: Engine) -> Iterator[httpx.Client]:
    """An empty database with three patients (pat-c has registered the national data opt-out),
    their records, reference data and a Group; a direct-care system client on worker 1."""
    wipe(engine)
    with _client(workers[0].base, _token(engine, workers[0].base, "system/*.cruds")) as c:
        for r in _records():
            put = c.put(f"/{r['resourceType']}/{r['id']}", json=r)
            assert put.status_code == 201, put.text
    with _client(workers[0].base, _token(engine, workers[0].base)) as c:
        yield c


def _records() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"resourceType": "Organization", "id": "org-1", "name": "Riverside Surgery"}]
    for pid in ("pat-a", "pat-b", "pat-c"):
        out.append({"resourceType": "Patient", "id": pid, "name": [{"family": pid.upper(), "given": ["Pat"]}],
                    "managingOrganization": {"reference": "Organization/org-1"}})
        for n in range(6):
            out.append({"resourceType": "Observation", "id": f"obs-{pid}-{n}", "status": "final",
                        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}], "text": "Heart rate"},
                        "subject": {"reference": f"Patient/{pid}"},
                        "valueQuantity": {"value": 60 + n, "unit": "/min"}})
        out.append({"resourceType": "Condition", "id": f"cond-{pid}", "subject": {"reference": f"Patient/{pid}"},
                    "code": {"text": "Asthma"}})
    out.append({"resourceType": "Consent", "id": "optout-c", "status": "active", "scope": {"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "research"}]},
        "category": [OPT_OUT], "patient": {"reference": "Patient/pat-c"},
        "policyRule": {"text": "National data opt-out"}})
    out.append({"resourceType": "Group", "id": "grp-1", "type": "person", "actual": True, "member": [
        {"entity": {"reference": "Patient/pat-a"}}, {"entity": {"reference": "Patient/pat-c"}},
        {"entity": {"reference": "Patient/pat-b"}, "inactive": True}]})
    return out


# -- helpers ------------------------------------------------------------------------------------------
def kick_off(c: httpx.Client, path: str = "/$export", **params: str) -> str:
    r = c.get(path, params=params, headers=ASYNC)
    assert r.status_code == 202, r.text
    assert r.headers["content-location"].startswith(f"{c.base_url}".rstrip("/") + "/$export-status/")
    return r.headers["content-location"]


def wait(c: httpx.Client, status_url: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        r = c.get(status_url)
        if r.status_code == 200:
            assert r.headers["content-type"].startswith("application/json")
            assert r.headers["cache-control"] == "no-store" and r.headers["expires"]
            return r.json()  # type: ignore[no-any-return]
        assert r.status_code == 202, r.text
        assert r.headers["x-progress"] and int(r.headers["retry-after"]) > 0
        assert time.monotonic() < deadline, "export did not finish"
        time.sleep(0.05)


def download(c: httpx.Client, manifest: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Every exported resource by type, checking each file on the way."""
    out: dict[str, list[dict[str, Any]]] = {}
    for item in manifest["output"]:
        r = c.get(item["url"])
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith(NDJSON) and r.headers["cache-control"] == "no-store"
        lines = r.content.splitlines()
        assert r.content.endswith(b"\n") and len(lines) == item["count"]
        resources = [orjson.loads(line) for line in lines]
        assert {x["resourceType"] for x in resources} == {item["type"]}
        out.setdefault(item["type"], []).extend(resources)
    return out


def searched(c: httpx.Client, query: str) -> dict[str, dict[str, Any]]:
    """Every match of a search, following its next links, by id."""
    found: dict[str, dict[str, Any]] = {}
    r = c.get(query)
    while True:
        assert r.status_code == 200, r.text
        body = r.json()
        found.update({e["resource"]["id"]: e["resource"] for e in body.get("entry", [])
                      if e["search"]["mode"] == "match"})
        nxt = [x["url"] for x in body.get("link", []) if x["relation"] == "next"]
        if not nxt:
            return found
        r = c.get(nxt[0])


@contextmanager
def held(exports: Exports) -> Iterator[None]:
    """Keep the worker's only export slot busy, so a job kicked off meanwhile stays queued."""
    exports._slots.acquire()
    try:
        yield
    finally:
        exports._slots.release()


def ids(resources: list[dict[str, Any]]) -> set[str]:
    return {r["id"] for r in resources}


# -- the flow -------------------------------------------------------------------------------------------
def test_a_system_export_runs_asynchronously_and_every_file_holds_what_a_search_returns(
        world: httpx.Client, workers: list[Worker]) -> None:
    with held(workers[0].exports):
        status_url = kick_off(world, "/$export")
        r = world.get(status_url)
        assert r.status_code == 202 and r.headers["x-progress"] == "queued" and r.headers["retry-after"] == "2"
    manifest = wait(world, status_url)
    assert manifest["request"] == f"{workers[0].base}/$export"
    assert manifest["requiresAccessToken"] is True and manifest["error"] == []
    assert manifest["transactionTime"].endswith("Z")
    assert all(set(o) == {"type", "url", "count"} for o in manifest["output"])
    exported = download(world, manifest)
    assert set(exported) == {"Organization", "Patient", "Observation", "Condition", "Consent", "Group"}
    for res_type, resources in exported.items():
        assert len(resources) == len(ids(resources)), f"{res_type} exported twice"
        assert {r["id"]: r for r in resources} == searched(world, f"/{res_type}?_count=7"), res_type
    observation_files = [o for o in manifest["output"] if o["type"] == "Observation"]
    assert len(observation_files) > 1  # 18 Observations do not fit in one 3,000-byte file
    assert all(len(world.get(o["url"]).content) <= FILE_BYTES for o in observation_files)


def test_status_and_files_are_served_by_any_worker(world: httpx.Client, workers: list[Worker],
                                                   engine: Engine) -> None:
    status_url = kick_off(world, "/$export", _type="Patient")
    manifest = wait(world, status_url)
    other = workers[1].base
    with _client(other, _token(engine, workers[0].base)) as c:  # one public base URL: the token's audience
        again = c.get(status_url.replace(workers[0].base, other))
        assert again.status_code == 200 and again.json() == manifest
        [item] = manifest["output"]
        assert c.get(item["url"].replace(workers[0].base, other)).content == world.get(item["url"]).content


def test_patient_export_holds_the_patients_compartments_and_type_and_since_narrow_it(
        world: httpx.Client, engine: Engine, workers: list[Worker]) -> None:
    if engine.dialect.name == "postgresql":  # transactionTime is PG_MARGIN_US before the snapshot there
        time.sleep(PG_MARGIN_US / 1_000_000 + 0.1)
    everything = download(world, wait(world, kick_off(world, "/Patient/$export")))
    assert "Organization" not in everything  # in no Patient compartment
    assert ids(everything["Patient"]) == {"pat-a", "pat-b", "pat-c"}
    first = wait(world, kick_off(world, "/Patient/$export", _type="Observation,Patient"))
    assert {o["type"] for o in first["output"]} == {"Observation", "Patient"}
    with _client(workers[0].base, _token(engine, workers[0].base, "system/*.cruds")) as writer:
        changed = {"resourceType": "Observation", "id": "obs-pat-a-0", "status": "amended",
                   "code": {"text": "Heart rate"}, "subject": {"reference": "Patient/pat-a"}}
        assert writer.put("/Observation/obs-pat-a-0", json=changed).status_code == 200
        assert writer.put("/Observation/obs-new", json={**changed, "id": "obs-new"}).status_code == 201
        assert writer.put("/Condition/cond-pat-b", json={
            "resourceType": "Condition", "id": "cond-pat-b", "subject": {"reference": "Patient/pat-b"},
            "code": {"text": "Asthma, resolved"}}).status_code == 200
    since = wait(world, kick_off(world, "/Patient/$export", _type="Observation",
                                 _since=first["transactionTime"]))
    newer = download(world, since)
    assert set(newer) == {"Observation"}
    assert ids(newer["Observation"]) == {"obs-pat-a-0", "obs-new"}
    assert [o["status"] for o in newer["Observation"] if o["id"] == "obs-pat-a-0"] == ["amended"]


def test_an_export_reads_one_snapshot_so_a_change_during_it_is_not_half_included(
        world: httpx.Client, engine: Engine, workers: list[Worker], monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages of two resources; after the first is written, one Observation of a later page is
    changed and another created. The export holds the first as it was and not the second: read
    live, the changed one would have moved to the end of the (lastUpdated) order, new."""
    exports, written, go = workers[0].exports, threading.Event(), threading.Event()
    write = runner.Files.write

    def pausing(self: runner.Files, res_type: str, line: bytes) -> None:
        write(self, res_type, line)
        if not written.is_set():
            written.set()
            go.wait(30)

    monkeypatch.setattr(runner.Files, "write", pausing)
    monkeypatch.setattr(exports, "page_size", 2)
    status_url = kick_off(world, "/$export", _type="Observation")
    assert written.wait(30)
    with _client(workers[0].base, _token(engine, workers[0].base, "system/*.cruds")) as writer:
        changed = {"resourceType": "Observation", "id": "obs-pat-b-3", "status": "amended",
                   "code": {"text": "Heart rate"}, "subject": {"reference": "Patient/pat-b"}}
        assert writer.put("/Observation/obs-pat-b-3", json=changed).status_code == 200
        assert writer.put("/Observation/obs-during", json={**changed, "id": "obs-during"}).status_code == 201
        changed_at = writer.get("/Observation/obs-pat-b-3").json()["meta"]["lastUpdated"]
    go.set()
    manifest = wait(world, status_url)
    observations = download(world, manifest)["Observation"]
    assert len(observations) == 18 and "obs-during" not in ids(observations)
    [kept] = [o for o in observations if o["id"] == "obs-pat-b-3"]
    assert kept["status"] == "final" and kept["meta"]["versionId"] == "1"
    assert manifest["transactionTime"] < changed_at


def test_group_export_holds_its_current_members_records_only(world: httpx.Client) -> None:
    exported = download(world, wait(world, kick_off(world, "/Group/grp-1/$export",
                                                     _type="Patient,Observation,Condition")))
    assert ids(exported["Patient"]) == {"pat-a", "pat-c"}  # pat-b's membership is inactive
    assert ids(exported["Observation"]) == {f"obs-{p}-{n}" for p in ("pat-a", "pat-c") for n in range(6)}
    assert ids(exported["Condition"]) == {"cond-pat-a", "cond-pat-c"}
    searched_a = searched(world, "/Observation?subject=Patient/pat-a")
    assert {r["id"]: r for r in exported["Observation"] if r["subject"]["reference"] == "Patient/pat-a"} == searched_a
    r = world.get("/Group/no-such-group/$export", headers=ASYNC)
    outcome(r, 404, "not-found")


# -- who may export, who may see a job -------------------------------------------------------------------
def test_a_client_may_export_only_the_types_its_scopes_let_it_read(world: httpx.Client, engine: Engine,
                                                                   workers: list[Worker]) -> None:
    base = workers[0].base
    with _client(base, _token(engine, base, "system/Patient.c system/Observation.cud")) as c:
        outcome(c.get("/$export", headers=ASYNC), 403, "forbidden")
    with _client(base, _token(engine, base, "system/Observation.rs")) as c:
        outcome(c.get("/$export", params={"_type": "Patient"}, headers=ASYNC), 403, "forbidden")
        outcome(c.get("/$export", params={"_type": "Observation,Condition"}, headers=ASYNC), 403, "forbidden")
        outcome(c.get("/$export", params={"_type": "Observation"}, headers={
            **ASYNC, "Authorization": "Bearer not-a-token"}), 401, "login")
        manifest = wait(c, kick_off(c, "/$export"))
        assert {o["type"] for o in manifest["output"]} == {"Observation"}
        assert len(download(c, manifest)["Observation"]) == 18
    with _client(base, _token(engine, base, "system/Observation.rs?category=vital-signs")) as c:
        outcome(c.get("/$export", params={"_type": "Observation"}, headers=ASYNC), 403, "forbidden")


@pytest.mark.parametrize("who", ["staff", "patient"])
def test_staff_and_patients_cannot_export_whatever_their_scopes(who: str, world: httpx.Client, engine: Engine,
                                                                workers: list[Worker]) -> None:
    base = workers[0].base
    grantee = (Grantee("staff", "Practitioner/dr-1", practitioner_role="PractitionerRole/r-1", role="doctor",
                       organization="Organization/org-1") if who == "staff"
               else Grantee("patient", "Patient/pat-a", patients=("pat-a",), patient="pat-a"))
    with _client(base, _person(engine, base, grantee, "user/*.rs patient/*.rs")) as c:
        for path in ("/$export", "/Patient/$export", "/Group/grp-1/$export"):
            outcome(c.get(path, headers=ASYNC), 403, "forbidden")


def test_another_client_learns_nothing_of_a_job(world: httpx.Client, engine: Engine, workers: list[Worker]) -> None:
    base = workers[0].base
    status_url = kick_off(world, "/$export", _type="Patient")
    manifest = wait(world, status_url)
    file_url = manifest["output"][0]["url"]
    job = status_url.rsplit("/", 1)[1]
    unknown = "0" * 32
    people = Grantee("patient", "Patient/pat-a", patients=("pat-a",))
    strangers = [_token(engine, base, client_id="another-exporter"),  # another system client
                 _person(engine, base, people, "patient/*.rs")]  # a patient whose data is in it
    for token in strangers:
        with _client(base, token) as c:
            for url, missing in ((status_url, f"{base}/$export-status/{unknown}"),
                                 (file_url, file_url.replace(job, unknown))):
                seen, never = c.get(url), c.get(missing)
                outcome(seen, 404, "not-found")
                assert seen.json()["issue"][0]["diagnostics"] == never.json()["issue"][0]["diagnostics"].replace(
                    unknown, job)
            outcome(c.delete(status_url), 404, "not-found")
    assert world.get(status_url).status_code == 200  # still there for its owner
    assert world.get(file_url).status_code == 200


# -- the national data opt-out -------------------------------------------------------------------------
def _secondary_use_token(engine: Engine, base: str) -> str:
    """A token got the way a registered research system gets one: client credentials."""
    made = Clients(engine).add("research platform", "system/*.rs", purpose="secondary-use")
    assert made.client.purpose == "secondary-use" and made.secret
    with httpx.Client(base_url=base.removesuffix("/fhir"), timeout=30) as browser:
        r = browser.post("/oauth/token", data={"grant_type": "client_credentials", "scope": "system/*.rs"},
                         auth=(made.client.client_id, made.secret))
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def test_secondary_use_leaves_out_every_opted_out_patient_and_direct_care_keeps_them(
        world: httpx.Client, engine: Engine, workers: list[Worker]) -> None:
    base = workers[0].base
    with _client(base, _secondary_use_token(engine, base)) as research:
        for path in ("/$export", "/Patient/$export", "/Group/grp-1/$export"):
            manifest = wait(research, kick_off(research, path))
            exported = download(research, manifest)
            ext = manifest["extension"]
            assert ext["https://carerecord.org/fhir/bulk-export/purpose"] == "secondary-use"
            assert ext["https://carerecord.org/fhir/bulk-export/excluded-patients"] == {
                "reason": "national-data-opt-out", "count": 1}, path
            text = b"".join(orjson.dumps(r) for rs in exported.values() for r in rs)
            assert b"pat-c" not in text, path  # not the Patient, nor anything in their compartment
            assert "pat-a" in ids(exported["Patient"])
            if path != "/$export":
                assert "Group" not in exported  # the Group names pat-c: it is in their compartment
        # The guard holds the client to the opt-out on every other path too.
        outcome(research.get("/Patient/pat-c"), 404, "not-found")
        assert "pat-c" not in searched(research, "/Patient")
        assert not searched(research, "/Observation?subject=Patient/pat-c")
    direct = download(world, manifest := wait(world, kick_off(world, "/Patient/$export")))
    assert "pat-c" in ids(direct["Patient"])
    assert {f"obs-pat-c-{n}" for n in range(6)} <= ids(direct["Observation"])
    assert manifest["extension"]["https://carerecord.org/fhir/bulk-export/excluded-patients"]["count"] == 0


# -- the audit trail --------------------------------------------------------------------------------------
def test_every_exported_patient_is_audited_before_the_manifest_lists_a_file(
        world: httpx.Client, engine: Engine, workers: list[Worker]) -> None:
    store = AuditStore(engine)
    before = store.position()
    exports = workers[0].exports
    seen: list[list[str | None]] = []
    append = exports.audit.append  # type: ignore[union-attr]

    def checking(events: Any) -> int:
        published = [p for p in Path(exports.root).glob("*/manifest.json")]
        assert not any(p.parent.name in status_url for p in published), "manifest before its audit records"
        seen.append([e.patient for e in events])
        return append(events)

    status_url = ""
    with held(exports):
        status_url = kick_off(world, "/Patient/$export", _type="Patient,Observation")
        exports.audit.append = checking  # type: ignore[union-attr,method-assign]
    try:
        manifest = wait(world, status_url)
    finally:
        exports.audit.append = append  # type: ignore[union-attr,method-assign]
    download(world, manifest)
    assert sorted(p for batch in seen for p in batch) == ["pat-a", "pat-b", "pat-c"]  # one each, not per resource
    rows = [e for e in store.since(before) if '"op":"export"' in e.content]
    assert sorted(e.patient for e in rows if e.patient) == ["pat-a", "pat-b", "pat-c"]
    record = orjson.loads(rows[-1].content)
    assert record["i"] == "operation" and record["cid"] == "exporter" and record["p"] == "/Patient/$export"
    kinds = [orjson.loads(e.content).get("op") for e in store.since(before)]
    assert {"export-status", "export-file"} <= set(kinds)  # the polls and the downloads themselves


def test_a_job_whose_audit_records_cannot_be_written_makes_no_file_available(
        world: httpx.Client, workers: list[Worker]) -> None:
    exports = workers[0].exports
    append = exports.audit.append  # type: ignore[union-attr]

    def failing(events: Any) -> int:
        raise OSError("disk full")

    with held(exports):
        status_url = kick_off(world, "/$export", _type="Patient")
        exports.audit.append = failing  # type: ignore[union-attr,method-assign]
    try:
        deadline = time.monotonic() + 30
        while (r := world.get(status_url)).status_code == 202:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        exports.audit.append = append  # type: ignore[union-attr,method-assign]
    assert r.status_code == 500 and r.json()["resourceType"] == "OperationOutcome"
    job_dir = Path(exports.root) / status_url.rsplit("/", 1)[1]
    assert not list(job_dir.glob("*.ndjson")) and not (job_dir / "manifest.json").exists()
    outcome(world.get(f"{workers[0].base}/$export-file/{job_dir.name}/Patient-1.ndjson"), 404, "not-found")


def test_a_file_is_not_sent_when_its_download_cannot_be_audited(world: httpx.Client, workers: list[Worker]) -> None:
    manifest = wait(world, kick_off(world, "/$export", _type="Patient"))
    writer = writer_of(workers[0].app)
    assert writer is not None
    writer.stop()
    try:
        r = world.get(manifest["output"][0]["url"])
    finally:
        writer.stopped = False
    outcome(r, 503, "transient")
    assert b"pat-a" not in r.content
    assert world.get(manifest["output"][0]["url"]).status_code == 200


# -- deletion and interruption ---------------------------------------------------------------------------
def test_deleting_an_export_removes_it_and_its_files(world: httpx.Client, workers: list[Worker],
                                                     engine: Engine) -> None:
    status_url = kick_off(world, "/$export", _type="Patient")
    manifest = wait(world, status_url)
    job_dir = Path(workers[0].exports.root) / status_url.rsplit("/", 1)[1]
    assert job_dir.is_dir()
    before = AuditStore(engine).position()
    r = world.delete(status_url)
    assert r.status_code == 202 and r.json()["resourceType"] == "OperationOutcome"
    assert not job_dir.exists()
    [deletion] = [orjson.loads(e.content) for e in AuditStore(engine).since(before)]
    assert (deletion["m"], deletion["op"], deletion["s"], deletion["cid"]) == ("DELETE", "export-status", 202, "exporter")
    outcome(world.get(status_url), 404, "not-found")
    outcome(world.get(manifest["output"][0]["url"]), 404, "not-found")
    outcome(world.delete(status_url), 404, "not-found")


def test_deleting_a_queued_export_stops_it(world: httpx.Client, workers: list[Worker]) -> None:
    exports = workers[0].exports
    with held(exports):
        status_url = kick_off(world, "/$export")
        assert world.delete(status_url).status_code == 202
    job_dir = Path(exports.root) / status_url.rsplit("/", 1)[1]
    time.sleep(0.5)  # the job's thread takes the slot, finds its folder gone and stops
    assert not job_dir.exists()
    outcome(world.get(status_url), 404, "not-found")


def test_deleting_a_running_export_stops_it_at_its_next_page(world: httpx.Client, workers: list[Worker],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    exports, written, go, lines = workers[0].exports, threading.Event(), threading.Event(), []
    write = runner.Files.write

    def pausing(self: runner.Files, res_type: str, line: bytes) -> None:
        write(self, res_type, line)
        lines.append(line)
        if not written.is_set():
            written.set()
            go.wait(30)

    monkeypatch.setattr(runner.Files, "write", pausing)
    monkeypatch.setattr(exports, "page_size", 2)
    status_url = kick_off(world, "/$export", _type="Observation")
    job = status_url.rsplit("/", 1)[1]
    assert written.wait(30)
    assert world.delete(status_url).status_code == 202
    go.set()
    deadline = time.monotonic() + 30
    while job in exports._active:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert len(lines) <= 2  # the rest of its first page at most, of 18
    assert not (Path(exports.root) / job).exists() and not list(Path(exports.root).glob(f"*{job}*"))
    outcome(world.get(status_url), 404, "not-found")


def _dead_pid() -> int:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                           check=True, text=True)
    return int(child.stdout)


def test_a_job_interrupted_by_a_restart_is_failed_and_never_completes(
        world: httpx.Client, workers: list[Worker], engine: Engine) -> None:
    exports = workers[0].exports
    with held(exports):
        status_url = kick_off(world, "/$export", _type="Patient")
        job_dir = Path(exports.root) / status_url.rsplit("/", 1)[1]
        record = orjson.loads((job_dir / "job.json").read_bytes())
        # As if the process running it had been stopped and a new one had started since.
        (job_dir / "job.json").write_bytes(orjson.dumps({**record, "process": f"{_dead_pid()}-gone"}))
        other = workers[1].base
        with _client(other, _token(engine, workers[0].base)) as c:
            r = c.get(status_url.replace(workers[0].base, other))
            outcome(r, 500, "exception")
            assert "interrupted" in r.json()["issue"][0]["diagnostics"]
    time.sleep(0.5)  # the job's thread now runs, finds the mark and publishes nothing
    r = world.get(status_url)
    outcome(r, 500, "exception")
    assert not (job_dir / "manifest.json").exists() and not list(job_dir.glob("*.ndjson"))


def test_a_stale_heartbeat_means_the_job_is_interrupted(world: httpx.Client, workers: list[Worker],
                                                        engine: Engine) -> None:
    exports = workers[0].exports
    with held(exports):
        status_url = kick_off(world, "/$export", _type="Patient")
        job_dir = Path(exports.root) / status_url.rsplit("/", 1)[1]
        record = orjson.loads((job_dir / "job.json").read_bytes())
        (job_dir / "job.json").write_bytes(orjson.dumps({**record, "host": "another-machine"}))
        other = workers[1].base
        with _client(other, _token(engine, workers[0].base)) as c:
            assert c.get(status_url.replace(workers[0].base, other)).status_code == 202  # its heartbeat is fresh
            old = time.time() - 3600
            os.utime(job_dir / "heartbeat", (old, old))
            outcome(c.get(status_url.replace(workers[0].base, other)), 500, "exception")


# -- _typeFilter and the POST kick-off --------------------------------------------------------------------------
def test_a_type_filter_narrows_the_types_it_names_and_leaves_the_others_whole(world: httpx.Client) -> None:
    exported = download(world, wait(world, kick_off(
        world, "/$export", _type="Observation,Condition,Patient",
        _typeFilter="Observation?subject=Patient/pat-a,Observation?value-quantity=ge65")))
    assert ids(exported["Observation"]) == {f"obs-pat-a-{n}" for n in range(6)} | {"obs-pat-b-5", "obs-pat-c-5"}
    assert ids(exported["Condition"]) == {"cond-pat-a", "cond-pat-b", "cond-pat-c"}
    assert ids(exported["Patient"]) == {"pat-a", "pat-b", "pat-c"}
    # the same as the searches, and criteria of a Group export too; a filter that matches nothing exports nothing
    assert {r["id"]: r for r in exported["Observation"] if r["subject"]["reference"] == "Patient/pat-a"} == \
        searched(world, "/Observation?subject=Patient/pat-a")
    grouped = download(world, wait(world, kick_off(world, "/Group/grp-1/$export", _type="Observation,Patient",
                                                   _typeFilter="Observation?subject:Patient.name=PAT-C")))
    assert ids(grouped["Observation"]) == {f"obs-pat-c-{n}" for n in range(6)}
    assert ids(grouped["Patient"]) == {"pat-a", "pat-c"}
    nothing = wait(world, kick_off(world, "/$export", _type="Observation", _typeFilter="Observation?status=cancelled"))
    assert nothing["output"] == []


def test_a_type_filter_cannot_widen_what_a_secondary_use_client_exports(
        world: httpx.Client, engine: Engine, workers: list[Worker]) -> None:
    base = workers[0].base
    opted_out = "https://carerecord.org/fhir/CodeSystem/consent-category|national-data-opt-out"
    filters = {"Observation": ["Observation?subject=Patient/pat-c", "Observation?subject:Patient.name=PAT-C"],
               "Patient": ["Patient?_id=pat-c", f"Patient?_has:Consent:patient:category={opted_out}"],
               # reference data chosen by what an opted-out patient's record says: the criteria see only
               # what the client may, or the Organization exported would tell of pat-c
               "Organization": ["Organization?_has:Patient:organization:name=PAT-C"]}
    with _client(base, _secondary_use_token(engine, base)) as research:
        for res_type, queries in filters.items():
            for query in queries:
                manifest = wait(research, kick_off(research, "/$export", _type=res_type, _typeFilter=query))
                assert manifest["output"] == [], query  # pat-c opted out: nothing of theirs, by any criteria
    for res_type, queries in filters.items():  # a direct-care client finds them by the same filters
        for query in queries:
            exported = download(world, wait(world, kick_off(world, "/$export", _type=res_type, _typeFilter=query)))
            assert exported[res_type], query
            if res_type != "Organization":
                assert all("pat-c" in orjson.dumps(r).decode() for r in exported[res_type]), query


def parameters(*pairs: tuple[str, str, str]) -> dict[str, Any]:
    """A Parameters body of (name, value[x] key, value)."""
    return {"resourceType": "Parameters", "parameter": [{"name": n, k: v} for n, k, v in pairs]}


def test_a_post_kick_off_takes_its_parameters_from_a_parameters_body(
        world: httpx.Client, workers: list[Worker], engine: Engine) -> None:
    store = AuditStore(engine)
    before = store.position()
    body = parameters(("_type", "valueString", "Observation,Patient"), ("_outputFormat", "valueString", "ndjson"),
                      ("_since", "valueInstant", "2000-01-01T00:00:00Z"),
                      ("_typeFilter", "valueString", "Observation?subject=Patient/pat-b"),
                      ("_typeFilter", "valueString", "Patient?_id=pat-b"))
    r = world.post("/Patient/$export", headers=ASYNC, json=body)
    assert r.status_code == 202, r.text
    manifest = wait(world, r.headers["content-location"])
    assert manifest["request"] == f"{workers[0].base}/Patient/$export"  # a POST's parameters are in its body
    exported = download(world, manifest)
    assert ids(exported["Observation"]) == {f"obs-pat-b-{n}" for n in range(6)}
    assert ids(exported["Patient"]) == {"pat-b"}
    [record] = [orjson.loads(e.content) for e in store.since(before)
                if '"op":"export"' in e.content and e.patient == "pat-b"]
    assert record["p"] == "/Patient/$export"
    for path in ("/$export", "/Group/grp-1/$export"):
        r = world.post(path, headers=ASYNC, json=parameters(("_type", "valueString", "Patient")))
        assert r.status_code == 202, r.text
        assert set(download(world, wait(world, r.headers["content-location"]))) == {"Patient"}


@pytest.mark.parametrize(("body", "status", "expression"), [
    ({"resourceType": "Bundle", "type": "collection"}, 400, "resourceType"),
    (parameters(("_since", "valueInstant", "yesterday")), 400, "Parameters.parameter[0].valueInstant"),
    (parameters(("_type", "valueString", "Patient"), ("_typeFilter", "valueString", "Patient?flavour=x")), 400,
     "Parameters.parameter[1].valueString"),
    (parameters(("_type", "valueString", "Patient"), ("_typeFilter", "valueString", "Patient?name=a"),
                ("_typeFilter", "valueString", "Patient?_sort=name")), 400, "Parameters.parameter[2].valueString"),
    (parameters(("_outputFormat", "valueString", "ndjson"), ("_outputFormat", "valueString", "ndjson")), 400,
     "Parameters.parameter[1].valueString"),
    (parameters(("patient", "valueReference", {"reference": "Patient/pat-a"})), 400,  # type: ignore[arg-type]
     "Parameters.parameter[0].valueReference"),
    ({"resourceType": "Parameters", "parameter": [{"name": "_type"}]}, 400, "Parameters.parameter[0]"),
    (parameters(("_type", "valueString", "Nonsense")), 400, "Parameters.parameter[0].valueString"),
])
def test_a_bad_post_kick_off_names_the_parameter(body: dict[str, Any], status: int, expression: str,
                                                  world: httpx.Client) -> None:
    outcome(world.post("/$export", headers=ASYNC, json=body), status, "invalid", expression)


def test_a_post_kick_off_is_held_to_the_scopes_like_a_get(world: httpx.Client, engine: Engine,
                                                           workers: list[Worker]) -> None:
    base = workers[0].base
    with _client(base, _token(engine, base, "system/Observation.rs")) as c:
        for body in (parameters(("_type", "valueString", "Patient")),
                     parameters(("_typeFilter", "valueString", "Patient?_id=pat-a"))):
            outcome(c.post("/$export", headers=ASYNC, json=body), 403, "forbidden")
        outcome(c.post("/$export", json=parameters(("_type", "valueString", "Observation"))), 400, "invalid", "Prefer")


# -- bad requests --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("path", "params", "headers", "status", "expression"), [
    ("/$export", {}, {}, 400, "Prefer"),
    ("/$export", {"_outputFormat": "text/csv"}, ASYNC, 400, "_outputFormat"),
    ("/$export", {"_type": "Nonsense"}, ASYNC, 400, "_type"),
    ("/Patient/$export", {"_type": "Organization"}, ASYNC, 400, "_type"),
    ("/$export", {"_since": "yesterday"}, ASYNC, 400, "_since"),
    ("/$export", {"_since": "2026-02-30"}, ASYNC, 400, "_since"),
    ("/$export", {"_outputFormat": "ndjson", "organizeOutputBy": "Patient"}, ASYNC, 400, "organizeOutputBy"),
    ("/$export", {"_typeFilter": "Observation"}, ASYNC, 400, "_typeFilter"),
    ("/$export", {"_typeFilter": "Observation?"}, ASYNC, 400, "_typeFilter"),
    ("/$export", {"_typeFilter": "Nonsense?status=final"}, ASYNC, 400, "_typeFilter"),
    ("/$export", {"_typeFilter": "Observation?flavour=sweet"}, ASYNC, 400, "_typeFilter"),
    ("/$export", {"_typeFilter": "Observation?date=yesterday"}, ASYNC, 400, "_typeFilter"),
    ("/$export", {"_typeFilter": "Observation?status=final&_sort=date"}, ASYNC, 400, "_typeFilter"),
    ("/$export", {"_typeFilter": "Observation?_include=Observation:subject"}, ASYNC, 400, "_typeFilter"),
    ("/$export", {"_typeFilter": "Observation?_count=1"}, ASYNC, 400, "_typeFilter"),
    ("/$export", {"_typeFilter": "Observation?code:below=http://unknown.example|1"}, ASYNC, 400, "_typeFilter"),
    ("/$export", {"_type": "Patient", "_typeFilter": "Observation?status=final"}, ASYNC, 400, "_typeFilter"),
    ("/Patient/$export", {"_typeFilter": "Organization?name=x"}, ASYNC, 400, "_typeFilter"),
])
def test_bad_kick_offs_are_refused_with_an_operation_outcome(
        path: str, params: dict[str, str], headers: dict[str, str], status: int, expression: str,
        world: httpx.Client) -> None:
    outcome(world.get(path, params=params, headers=headers), status, "invalid", expression)


def test_unsupported_parameters_are_ignored_when_the_client_prefers_lenient_handling(world: httpx.Client) -> None:
    r = world.get("/$export", params={"_type": "Patient", "organizeOutputBy": "Patient",
                                      "includeAssociatedData": "LatestProvenanceResources", "_outputFormat": "ndjson"},
                  headers={"Prefer": "respond-async, handling=lenient"})
    assert r.status_code == 202, r.text
    warnings = [i["diagnostics"] for i in r.json()["issue"] if i["severity"] == "warning"]  # and reported
    assert len(warnings) == 2 and "organizeOutputBy" in warnings[0] and "LatestProvenanceResources" in warnings[1]
    manifest = wait(world, r.headers["content-location"])
    assert ids(download(world, manifest)["Patient"]) == {"pat-a", "pat-b", "pat-c"}


def test_export_routes_answer_other_methods_with_405(world: httpx.Client) -> None:
    outcome(world.put("/$export", headers=ASYNC, json={"resourceType": "Parameters"}), 405, "not-supported")
    outcome(world.delete("/Patient/$export", headers=ASYNC), 405, "not-supported")
    outcome(world.put(f"/$export-status/{'0' * 32}", json={}), 405, "not-supported")


def test_the_capability_statement_lists_bulk_export(world: httpx.Client) -> None:
    cap = world.get("/metadata").json()
    assert "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data" in cap["instantiates"]
    assert {"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"} in \
        [{k: v for k, v in op.items() if k != "documentation"} for op in cap["rest"][0]["operation"]]
    for res_type in ("Patient", "Group"):
        [entry] = [r for r in cap["rest"][0]["resource"] if r["type"] == res_type]
        assert "export" in {op["name"] for op in entry["operation"]}
    # which parameters: test_export_params.py
