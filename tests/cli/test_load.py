"""`carerecord load` and `check` as a user runs them: real subprocesses on a real database."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
from sqlalchemy import Engine, func, select

from carerecord.store import schema
from carerecord.store.repository import Repository
from tests.conftest import shared_data, wipe

SCALE = os.environ.get("CARERECORD_SLOW_SCALE", "full")


def cli(database_url: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "carerecord.cli", *args, "--database", database_url],
                          capture_output=True, text=True, timeout=timeout)


def live_counts(engine: Engine) -> Counter[str]:
    r = schema.resources
    with engine.connect() as c:
        rows = c.execute(select(r.c.res_type, func.count()).where(r.c.deleted.is_(False))
                         .group_by(r.c.res_type)).all()
    return Counter({t: n for t, n in rows})


def test_all_synthea_bundles_load_with_nothing_rejected(engine: Engine, database_url: str) -> None:
    folder = shared_data("synthea-r4")
    wipe(engine)
    expected: Counter[str] = Counter()
    for f in folder.rglob("*.json.gz"):  # the 149 patients and the shared _aux bundles
        for e in orjson.loads(gzip.open(f).read())["entry"]:
            expected[e["resource"]["resourceType"]] += 1
    done = cli(database_url, "load", str(folder))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Rejected" not in done.stderr
    assert f"Loaded {sum(expected.values())} resources" in done.stdout
    assert live_counts(engine) == expected
    checked = cli(database_url, "check")
    assert checked.returncode == 0 and "OK: no problems found" in checked.stdout, checked.stdout


def test_load_reports_what_it_rejected_and_why(engine: Engine, database_url: str, tmp_path: Path) -> None:
    wipe(engine)
    good = {"resourceType": "Patient", "id": "p1", "name": [{"family": "Good"}]}
    bad = {"resourceType": "Patient", "id": "p2", "birthDate": "1999-02-31"}
    (tmp_path / "people.ndjson").write_bytes(orjson.dumps(good) + b"\n" + orjson.dumps(bad) + b"\n{oops\n")
    done = cli(database_url, "load", str(tmp_path))
    assert done.returncode == 1
    assert "people.ndjson:2" in done.stderr and "birthDate" in done.stderr
    assert "people.ndjson:3: not valid JSON" in done.stderr
    assert live_counts(engine) == Counter({"Patient": 1})


def test_load_reads_gzip_ndjson_and_single_resources(engine: Engine, database_url: str, tmp_path: Path) -> None:
    wipe(engine)
    lines = b"".join(orjson.dumps({"resourceType": "Organization", "id": f"o{i}", "name": f"Org {i}"}) + b"\n"
                     for i in range(30))
    (tmp_path / "orgs.ndjson.gz").write_bytes(gzip.compress(lines))
    (tmp_path / "one.json").write_bytes(orjson.dumps({"resourceType": "Patient", "name": [{"family": "X"}]}))
    done = cli(database_url, "load", str(tmp_path / "orgs.ndjson.gz"), str(tmp_path / "one.json"))
    assert done.returncode == 0, done.stderr
    assert live_counts(engine) == Counter({"Organization": 30, "Patient": 1})


def test_a_load_killed_mid_way_leaves_only_whole_bundles(engine: Engine, database_url: str) -> None:
    """SIGKILL during a load: every bundle is all or nothing, and `check` finds no problem."""
    folder = shared_data("synthea-r4")
    wipe(engine)
    files = sorted(folder.glob("*.json.gz"))[: 12 if SCALE == "ci" else 40]
    sizes = {}
    for f in files:
        doc = orjson.loads(gzip.open(f).read())
        pat = next(e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == "Patient")
        sizes[pat["name"][0]["family"] + pat["birthDate"]] = len(doc["entry"])
    proc = subprocess.Popen([sys.executable, "-m", "carerecord.cli", "load", *map(str, files),
                             "--database", database_url], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while live_counts(engine).total() < 1000 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the loader and its staging workers, as a crash would
    proc.wait()
    total = live_counts(engine).total()
    loaded_patients = live_counts(engine)["Patient"]
    assert 0 < loaded_patients
    expected = 0
    with engine.connect() as c:
        for content in c.execute(select(schema.resource_versions.c.content)
                                 .where(schema.resource_versions.c.res_type == "Patient")).scalars():
            pat = orjson.loads(content)
            expected += sizes[pat["name"][0]["family"] + pat["birthDate"]]
    assert total == expected, "a bundle was partly written"
    checked = cli(database_url, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_parallel_load_rejects_a_bad_bundle_alone_and_says_where(engine: Engine, database_url: str,
                                                                  tmp_path: Path) -> None:
    """With --jobs 2 bundles are validated in worker processes; a bad one is still reported
    with the entry and element at fault, and the good ones load."""
    wipe(engine)

    def bundle(*resources: dict[str, object]) -> bytes:
        return orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": f"urn:uuid:00000000-0000-4000-8000-00000000000{i}", "resource": r,
             "request": {"method": "POST", "url": r["resourceType"]}} for i, r in enumerate(resources)]})

    pat = {"resourceType": "Patient", "name": [{"family": "Ok"}]}
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "subject": {"reference": "urn:uuid:00000000-0000-4000-8000-000000000000"}}
    (tmp_path / "a.json").write_bytes(bundle(pat, obs))
    (tmp_path / "b.json").write_bytes(bundle(pat, {**obs, "status": "sort-of"}))
    (tmp_path / "c.json.gz").write_bytes(gzip.compress(bundle(pat, obs)))
    done = cli(database_url, "load", str(tmp_path), "--jobs", "2")
    assert done.returncode == 1
    assert "b.json: Bundle.entry[1].resource.status" in done.stderr, done.stderr
    assert live_counts(engine) == Counter({"Patient": 2, "Observation": 2})
    with engine.connect() as c:  # the _content words staged in the workers were written too
        assert c.execute(select(func.count()).select_from(schema.idx_content)).scalar_one() == 4


def test_load_rejects_subsetted_copies_and_reports_each(engine: Engine, database_url: str, tmp_path: Path) -> None:
    """Hazard H054: a redacted or summary copy (tagged SUBSETTED) in a load file is rejected and
    reported, wherever it is: a loose resource, a transaction (rolled back whole), a batch entry
    (alone; the batch's other entries load). Staged in workers (--jobs 2) and in process."""
    subsetted = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
    good = {"resourceType": "Patient", "id": "full", "name": [{"family": "Full"}]}
    copy = {"resourceType": "Patient", "id": "copy", "meta": {"tag": [subsetted]}}

    def bundle(kind: str, *resources: dict[str, object]) -> bytes:
        return orjson.dumps({"resourceType": "Bundle", "type": kind, "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"Patient/{r['id']}"}} for r in resources]})

    (tmp_path / "loose.ndjson").write_bytes(orjson.dumps(good) + b"\n" + orjson.dumps(copy) + b"\n")
    (tmp_path / "tx.json").write_bytes(bundle("transaction", {**good, "id": "tx"}, {**copy, "id": "tx-copy"}))
    (tmp_path / "batch.json").write_bytes(bundle("batch", {**good, "id": "batch"}, {**copy, "id": "batch-copy"}))
    for jobs in ("0", "2"):
        wipe(engine)
        done = cli(database_url, "load", str(tmp_path), "--jobs", jobs)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "Rejected 3:" in done.stderr, done.stderr
        assert "loose.ndjson:2: Patient.meta.tag[0]: a subsetted (redacted or summary) copy" in done.stderr
        assert "tx.json: Bundle.entry[1].resource.meta.tag[0]" in done.stderr
        assert "batch.json: Bundle.entry[1].resource.meta.tag[0]" in done.stderr
        assert "Loaded 2 resources" in done.stdout, done.stdout
        with engine.connect() as c:
            ids = set(c.execute(select(schema.resources.c.res_id)).scalars())
        assert ids == {"full", "batch"}


def test_the_loader_keeps_what_the_process_holds_out_of_the_collectors_sight(repo: Repository) -> None:
    """For the load the process's long-lived objects are frozen (full collections walked them
    again and again and found nothing), and thawed after it; a process that froze its own
    before (a server) keeps them frozen."""
    import gc

    from carerecord.cli.load import Loader, LoadReport
    from carerecord.store.interactions import Interactions

    loader = Loader(Interactions(repo, "http://example.org/fhir"))
    gc.unfreeze()
    with loader:
        assert gc.get_freeze_count() > 0
        loader.load_items([("resource", "x", {"resourceType": "Patient", "name": [{"family": "Frost"}]})],
                          LoadReport())
    assert gc.get_freeze_count() == 0
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with loader:
            pass
        assert gc.get_freeze_count() > frozen * 0.9  # still frozen (less what died meanwhile)
    finally:
        gc.unfreeze()
