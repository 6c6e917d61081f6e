"""The search benchmarks (issue 3): the demo community, the search URLs picked from it, and the
sequential latency measurements (``_total=accurate``, first and last page).

The community is what ``carerecord demo --no-serve --people N --seed S`` loads (about 31
resources per person: ``carerecord.demo.RESOURCES_PER_PERSON``). Loading 100,000 people into SQLite
takes a long while, so the SQLite file is kept under ``benchmarks/results/``
(``community-<N>p-seed<S>-g<V>.db``, V being ``carerecord.demo.GENERATOR_VERSION``, with a ``.json``
beside it saying how and when it was built) and reused while the schema revision is unchanged; a
file built by another generator version has another name, and is refused if passed by path.
PostgreSQL gets the same community loaded into a fresh database on every run.

Each search is a list of real URLs (``paths``), one per line, queried from the loaded database
and sampled with a fixed seed, which ``lua/read.lua`` cycles through under wrk, as the read-by-id
benchmark does with its Type/id paths.
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from benchmarks.common import ROOT, _git_head, auth_headers, carerecord_command, child_env

RESULTS = ROOT / "benchmarks" / "results"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
SNOMED = "http://snomed.info/sct"
BLOOD_PRESSURE = "75367002"  # demo/codes.py OBS_BP: every adult at every review, check and admission
HEART_RATE = "364075005"  # OBS_HEART_RATE: as common as blood pressure (~1.3 per person)
SAMPLE = 2000  # URLs per search file


def _q(value: str) -> str:
    return quote(value, safe="")



@dataclass(frozen=True, slots=True)
class Search:
    key: str
    label: str
    example: str
    min_rate: float | None  # requests/s target
    max_p99: float  # ms


SEARCHES = (
    Search("nhs", "search Patient by NHS number", "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|X",
           2000.0, 20.0),
    Search("family", "search Patient by family+birthdate", "Patient?family=F&birthdate=D", 2000.0, 20.0),
    Search("obs", "search Observation by patient+code+date",
           f"Observation?patient=X&code={SNOMED}|{BLOOD_PRESSURE}&date=geD", 1500.0, 25.0),
    Search("chain", "search MedicationRequest, 2-level chain",
           "MedicationRequest?requester:PractitionerRole.practitioner.identifier=SYSTEM|VALUE", None, 50.0),
    Search("include", "search MedicationRequest, _include+_revinclude",
           "MedicationRequest?patient=X&_include=MedicationRequest:requester"
           "&_include=MedicationRequest:encounter&_revinclude:iterate=Observation:encounter", None, 50.0),
)
TOTAL_QUERY = f"Observation?code={SNOMED}|{HEART_RATE}"
TOTAL_PATH = f"/fhir/Observation?code={_q(f'{SNOMED}|{HEART_RATE}')}"
TOTAL_TARGET_MS = 500.0
LAST_PAGE_RATIO = 1.10  # last page median / first page median: "no more than", with 10 % for noise


# -- the community --------------------------------------------------------------------------------
def cache_path(people: int, seed: int) -> Path:
    """Where the SQLite community of ``people`` people of ``seed`` is cached, for this generator."""
    from carerecord.demo import GENERATOR_VERSION

    return RESULTS / f"community-{people}p-seed{seed}-g{GENERATOR_VERSION}.db"


def schema_head() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from carerecord.store.engine import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head() or ""


def build(url: str, people: int, seed: int, workdir: Path, timeout: float = 4 * 3600) -> dict[str, Any]:
    """``carerecord demo --no-serve`` into ``url`` (a child process; its output goes to a log)."""
    log = workdir / f"demo-{int(time.time())}.log"
    cmd = [*carerecord_command(), "demo", "--no-serve", "--people", str(people), "--seed", str(seed),
           "--database", url, "--data-dir", str(workdir)]
    start = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.run(cmd, cwd=workdir, env=child_env(), stdout=out, stderr=subprocess.STDOUT,
                              timeout=timeout, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"carerecord demo failed ({proc.returncode}): "
                           f"{log.read_text(errors='replace')[-3000:]}")
    resources = count_resources(url)
    return {"people": people, "seed": seed, "seconds": seconds, "resources": resources,
            "rate": resources / seconds,
            "command": f"carerecord demo --no-serve --people {people} --seed {seed} --database URL"}


def count_resources(url: str) -> int:
    from carerecord.store.engine import make_engine

    engine = make_engine(url)
    with engine.connect() as c:
        n = int(c.exec_driver_sql("SELECT count(*) FROM resources WHERE NOT deleted").scalar_one())
    engine.dispose()
    return n


def sqlite_community(path: Path, people: int, seed: int, workdir: Path, rebuild: bool,
                     log: Any) -> dict[str, Any]:
    """The SQLite community file at ``path``: reused when its sidecar says it holds ``people``
    people of ``seed`` (migrated first when built at an older schema revision; with no sidecar: a file
    the user built, reused unchecked), else built there. Returns the build facts (from the sidecar when reused)."""
    from carerecord.demo import GENERATOR_VERSION

    meta_path = path.with_suffix(".json")
    head = schema_head()
    if path.exists() and not rebuild:
        if meta_path.exists():
            meta = json.loads(meta_path.read_text())
            if (meta.get("people"), meta.get("seed")) != (people, seed):
                raise SystemExit(f"{path} holds {meta.get('people')} people (seed {meta.get('seed')}), "
                                 f"not {people} (seed {seed}): pass --people/--seed to match, or another file")
            if meta.get("generator", 1) != GENERATOR_VERSION:
                raise SystemExit(f"{path} was built by demo generator version {meta.get('generator', 1)}, not "
                                 f"{GENERATOR_VERSION}: pass --rebuild-db, or another file")
            if meta.get("schema") == head:
                log(f"sqlite: reusing the community in {path} (built {meta.get('built')} at "
                    f"commit {meta.get('commit')}, {meta.get('resources', 0):,} resources)")
                return {**meta, "reused": True, "path": str(path)}
            # An older schema is brought up to date the way a deployment's would be.
            log(f"sqlite: {path} was built at schema {meta.get('schema')}: carerecord migrate to {head}")
            start = time.perf_counter()
            done = subprocess.run([*carerecord_command(), "migrate", "--database", f"sqlite:///{path}"],
                                  env=child_env(), capture_output=True, text=True)
            if done.returncode == 0:
                meta.update(schema=head, migrated={"from": meta.get("schema"), "commit": _git_head(),
                                                   "seconds": round(time.perf_counter() - start, 1)})
                meta_path.write_text(json.dumps(meta, indent=2))
                log(f"sqlite: migrated in {meta['migrated']['seconds']:.0f} s")
                return {**meta, "reused": True, "path": str(path)}
            log(f"sqlite: migrate failed ({done.stderr.strip()[-300:]}): rebuilding")
        else:
            n = count_resources(f"sqlite:///{path}")
            log(f"sqlite: reusing {path} ({n:,} resources; no {meta_path.name}, so not checked)")
            return {"people": people, "seed": seed, "resources": n, "reused": True, "path": str(path)}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    for p in (path, partial):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{p}{suffix}").unlink(missing_ok=True)
    log(f"sqlite: building the demo community, {people:,} people (seed {seed}) into {path}")
    info = build(f"sqlite:///{partial}", people, seed, workdir)
    for suffix in ("-wal", "-shm"):  # the loader closed cleanly, so these are normally gone
        if Path(f"{partial}{suffix}").exists():
            Path(f"{partial}{suffix}").rename(f"{path}{suffix}")
    partial.rename(path)
    meta = {**info, "schema": head, "generator": GENERATOR_VERSION, "commit": _git_head(),
            "built": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    meta_path.write_text(json.dumps(meta, indent=2))
    log(f"sqlite: community built: {info['resources']:,} resources in {info['seconds']:.0f} s "
        f"({info['rate']:,.0f}/s)")
    return {**meta, "reused": False, "path": str(path)}


def warm_file(path: Path) -> float:
    """Read a database file once so it sits in the page cache (as on a server that has been up)."""
    start = time.perf_counter()
    with path.open("rb", buffering=0) as f:
        while f.read(16 << 20):
            pass
    return time.perf_counter() - start


def reuse_postgres(url: str, people: int, seed: int) -> dict[str, Any]:
    """Facts about a PostgreSQL database that already holds the community, after bringing it
    to the current schema (``carerecord migrate``) and VACUUM ANALYZE."""
    start = time.perf_counter()
    subprocess.run([*carerecord_command(), "migrate", "--database", url], env=child_env(),
                   capture_output=True, check=True)
    migrate_seconds = time.perf_counter() - start
    n = count_resources(url)
    if n < people:
        raise SystemExit(f"{url} holds {n:,} resources: fewer than {people:,} people need")
    return {"people": people, "seed": seed, "resources": n, "reused": True,
            "migrate_seconds": round(migrate_seconds, 1), "vacuum_analyze_seconds": postgres_vacuum_analyze(url)}


def postgres_vacuum_analyze(url: str) -> float:
    """VACUUM ANALYZE after the bulk load: the state autovacuum reaches on its own some time
    later (statistics for the planner, the visibility map for index-only scans)."""
    import psycopg

    start = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - start


# -- search URLs from the data ---------------------------------------------------------------------
def _contents(conn: Any, res_type: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    from sqlalchemy import bindparam, text

    stmt = text("SELECT r.res_id, v.content FROM resources r JOIN resource_versions v "
                "ON v.rid = r.rid AND v.version = r.version "
                "WHERE r.res_type = :t AND r.res_id IN :ids").bindparams(bindparam("ids", expanding=True))
    out: dict[str, dict[str, Any]] = {}
    for i in range(0, len(ids), 500):
        for rid, content in conn.execute(stmt, {"t": res_type, "ids": ids[i:i + 500]}):
            out[rid] = orjson.loads(bytes(content))
    return out


def _sample(values: list[Any], n: int, seed: int) -> list[Any]:
    values = sorted(set(values))
    return random.Random(seed).sample(values, min(n, len(values)))


def write_paths(url: str, folder: Path, seed: int, n: int = SAMPLE) -> dict[str, Any]:
    """One file of search URLs per search (``folder/search-<key>.txt``), from the database at
    ``url``; the same sample on SQLite and PostgreSQL (candidates are sorted, then sampled with a
    fixed seed). Returns the files and facts about the data (match count of the _total query)."""
    from sqlalchemy import text

    from carerecord.store.engine import make_engine
    from carerecord.store.schema import param_key

    folder.mkdir(parents=True, exist_ok=True)
    engine = make_engine(url)
    files: dict[str, Path] = {}
    facts: dict[str, Any] = {}
    with engine.connect() as c:
        def column(sql: str, **params: Any) -> list[Any]:
            return [row[0] for row in c.execute(text(sql), params)]

        lines: dict[str, list[str]] = {}
        nhs = column("SELECT code FROM idx_token WHERE pkey = :k AND system = :s",
                     k=param_key("Patient", "identifier"), s=NHS)
        lines["nhs"] = [f"/fhir/Patient?identifier={_q(f'{NHS}|{v}')}" for v in _sample(nhs, n, seed)]

        patients = _sample(column("SELECT res_id FROM resources WHERE res_type = 'Patient' AND NOT deleted"),
                           n, seed + 1)
        docs = _contents(c, "Patient", patients)
        lines["family"] = [f"/fhir/Patient?family={_q(d['name'][0]['family'])}&birthdate={d['birthDate']}"
                           for pid in patients if (d := docs.get(pid)) and d.get("name") and d.get("birthDate")]

        bp = _sample(column("SELECT r.res_id FROM idx_token t JOIN resources r ON r.rid = t.rid "
                            "WHERE t.pkey = :k AND t.system = :s AND t.code = :c",
                            k=param_key("Observation", "code"), s=SNOMED, c=BLOOD_PRESSURE), n, seed + 2)
        docs = _contents(c, "Observation", bp)
        lines["obs"] = []
        for oid in bp:
            d = docs.get(oid)
            if d and d.get("effectiveDateTime"):
                patient = d["subject"]["reference"].split("/", 1)[1]
                lines["obs"].append(f"/fhir/Observation?patient={_q(patient)}"
                                    f"&code={_q(f'{SNOMED}|{BLOOD_PRESSURE}')}"
                                    f"&date=ge{d['effectiveDateTime'][:10]}")

        roles = column("SELECT DISTINCT ref_id FROM idx_reference WHERE pkey = :k AND ref_type = 'PractitionerRole'",
                       k=param_key("MedicationRequest", "requester"))
        role_docs = _contents(c, "PractitionerRole", sorted(roles))
        practitioners = sorted({d["practitioner"]["reference"].split("/", 1)[1]
                                for d in role_docs.values() if "practitioner" in d})
        prac_docs = _contents(c, "Practitioner", practitioners)
        idents = sorted({(i["system"], i["value"]) for d in prac_docs.values()
                         for i in d.get("identifier", [])[:1] if i.get("system") and i.get("value")})
        random.Random(seed + 3).shuffle(idents)
        lines["chain"] = [f"/fhir/MedicationRequest?requester:PractitionerRole.practitioner.identifier="
                          f"{_q(f'{sys_}|{val}')}" for sys_, val in idents]

        with_meds = _sample(column("SELECT DISTINCT ref_id FROM idx_reference WHERE pkey = :k "
                                   "AND ref_type = 'Patient'", k=param_key("MedicationRequest", "patient")),
                            n, seed + 4)
        lines["include"] = [f"/fhir/MedicationRequest?patient={_q(p)}&_include=MedicationRequest:requester"
                            "&_include=MedicationRequest:encounter&_revinclude:iterate=Observation:encounter"
                            for p in with_meds]

        facts["total_matches"] = int(c.execute(text(
            "SELECT count(*) FROM idx_token WHERE pkey = :k AND system = :s AND code = :c"),
            {"k": param_key("Observation", "code"), "s": SNOMED, "c": HEART_RATE}).scalar_one())
        facts["resources"] = int(c.execute(text("SELECT count(*) FROM resources WHERE NOT deleted")).scalar_one())
        facts["patients"] = len(nhs)
        facts["prescribers"] = len(idents)
    engine.dispose()
    for key, ls in lines.items():
        if not ls:
            raise RuntimeError(f"no values in the database for the {key!r} search")
        files[key] = folder / f"search-{key}.txt"
        files[key].write_text("".join(p + "\n" for p in ls))
        facts[f"{key}_urls"] = len(ls)
    facts["files"] = {k: str(v) for k, v in files.items()}
    return facts


# -- checks and sequential timings -----------------------------------------------------------------
def check(base: str, paths_file: Path, n: int = 10, budget: float = 20.0) -> dict[str, Any]:
    """GET the first ``n`` URLs of a file once each, one after another (for at most ``budget``
    seconds): statuses, latency, and how many matches / included resources the pages hold, so a
    search that silently finds nothing is seen."""
    paths = [p for p in paths_file.read_text().splitlines() if p][:n]
    bad, matches, included = 0, 0, 0
    lat: list[float] = []
    start = time.perf_counter()
    with httpx.Client(base_url=base, timeout=120, headers={"Accept": "application/fhir+json", **auth_headers()}) as c:
        for p in paths:
            if lat and time.perf_counter() - start > budget:
                break
            t0 = time.perf_counter()
            r = c.get(p)
            lat.append((time.perf_counter() - t0) * 1000)
            if r.status_code != 200:
                bad += 1
                continue
            for e in r.json().get("entry", []):
                mode = e.get("search", {}).get("mode")
                matches += mode == "match"
                included += mode == "include"
    k = max(1, len(lat))
    return {"checked": len(lat), "not_ok": bad, "matches_per_page": matches / k,
            "included_per_page": included / k, "median_ms": statistics.median(lat) if lat else None,
            "example": paths[0] if paths else None}


def timed_gets(base: str, path: str, n: int) -> dict[str, Any]:
    """``n`` GETs of one URL, one after another on a keep-alive connection: median and spread
    of the latency as the client sees it, and the first answer's total, entries and links."""
    lat: list[float] = []
    errors = 0
    body: dict[str, Any] = {}
    with httpx.Client(base_url=base, timeout=120, headers={"Accept": "application/fhir+json", **auth_headers()}) as c:
        for _ in range(n):
            t0 = time.perf_counter()
            r = c.get(path)
            lat.append((time.perf_counter() - t0) * 1000)
            if r.status_code != 200:
                errors += 1
            elif not body:
                body = r.json()
    lat.sort()
    return {"requests": n, "errors": errors, "median_ms": statistics.median(lat), "min_ms": lat[0],
            "p90_ms": lat[min(len(lat) - 1, int(0.9 * len(lat)))], "max_ms": lat[-1],
            "seconds": sum(lat) / 1000, "client_cpu_seconds": 0.0, "path": path,
            "total": body.get("total"),
            "entries": sum(1 for e in body.get("entry", []) if e.get("search", {}).get("mode") == "match"),
            "links": {ln["relation"]: ln["url"] for ln in body.get("link", [])}}


def path_of(url: str, base: str) -> str:
    """The path + query of a link the server gave out (its base may differ from ours)."""
    i = url.find("/fhir/")
    return url[i:] if i >= 0 else url.removeprefix(base)
