"""The hot searches use indexes, on both databases (EXPLAIN).

On SQLite the plan must never scan a table, nor walk every resource of a type. On
PostgreSQL sequential scans are switched off for the session: if the plan still has one, no
index could serve that part of the query. The data is small, so these check plan shapes,
not speed (benchmarks/ measures speed)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Select, text

from carerecord.access.guard import Guard
from carerecord.access.guarded import GuardedSearcher
from carerecord.access.principal import Kind, Principal, Purpose
from carerecord.access.scopes import ScopeSet
from carerecord.fhir import model
from carerecord.fhir.search_query import parse
from carerecord.services.export.request import ExportRequest, TypeFilter
from carerecord.services.export.runner import filter_queries, member_query, page_searcher, type_query
from carerecord.store import direct, paging
from carerecord.store.care_dates import care_condition
from carerecord.store.interactions import Interactions
from carerecord.store.repository import Repository
from carerecord.store.search import Searcher, rank
from carerecord.store.transaction import TransactionProcessor

NHS = "https://fhir.nhs.uk/Id/nhs-number"
HOT = {
    "patient by NHS number": ("Patient", [("identifier", f"{NHS}|9912003888")]),
    "patient by family and birthdate": ("Patient", [("family", "smith"), ("birthdate", "1950-02-03")]),
    "observations of a patient by code and date": (
        "Observation", [("patient", "p1"), ("code", "http://loinc.org|8867-4"), ("date", "ge2020-01-01")]),
    "two-level chain": ("Observation", [("subject:Patient.general-practitioner.name", "jones")]),
    "medication requests of a patient": ("MedicationRequest", [("patient", "p1")]),
    "reverse chain": ("Patient", [("_has:Observation:patient:code", "8867-4")]),
}


@pytest.fixture
def community(repo: Repository) -> Repository:
    entries = [{"resource": {"resourceType": "Practitioner", "id": "gp", "name": [{"family": "Jones"}]},
                "request": {"method": "PUT", "url": "Practitioner/gp"}}]
    for i in range(1, 31):
        entries.append({"resource": {
            "resourceType": "Patient", "id": f"p{i}", "name": [{"family": "Smith" if i % 2 else "Brown"}],
            "birthDate": f"19{50 + i}-02-03", "generalPractitioner": [{"reference": "Practitioner/gp"}],
            "identifier": [{"system": "urn:example:mrn", "value": f"m{i}"}]},
            "request": {"method": "PUT", "url": f"Patient/p{i}"}})
        for j in range(5):
            entries.append({"resource": {
                "resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                "subject": {"reference": f"Patient/p{i}"}, "effectiveDateTime": f"202{j}-01-01",
                "valueQuantity": {"value": 60 + j, "unit": "/min", "system": "http://unitsofmeasure.org",
                                  "code": "/min"}},
                "request": {"method": "POST", "url": "Observation"}})
    TransactionProcessor(Interactions(repo)).process(
        {"resourceType": "Bundle", "type": "transaction", "entry": entries})
    if repo.is_postgres:
        with repo.engine.begin() as c:
            c.execute(text("ANALYZE"))
    return repo


def explain(repo: Repository, stmt: Select[Any], *, sorted_by_index: bool = False) -> list[str]:
    """The plan. On PostgreSQL, ``sorted_by_index`` also turns off sorts and bitmap scans
    (which lose index order): a Sort left in the plan means no index gives that order."""
    sql = str(stmt.compile(repo.engine, compile_kwargs={"literal_binds": True}))
    with repo.engine.connect() as c:
        if repo.is_postgres:
            c.execute(text("SET enable_seqscan = off"))
            if sorted_by_index:
                c.execute(text("SET enable_sort = off"))
                c.execute(text("SET enable_bitmapscan = off"))
            return [r[0] for r in c.execute(text("EXPLAIN " + sql))]  # noqa: S608 - compiled by us
        return [r[3] for r in c.execute(text("EXPLAIN QUERY PLAN " + sql))]  # noqa: S608


def explain_text(repo: Repository, sql: str, binds: list[Any], *, sorted_by_index: bool = False) -> list[str]:
    """The plan of SQL text with bound values (store/direct.py's pages)."""
    with repo.engine.connect() as c:
        if repo.is_postgres:
            c.execute(text("SET enable_seqscan = off"))
            if sorted_by_index:
                c.execute(text("SET enable_sort = off"))
                c.execute(text("SET enable_bitmapscan = off"))
            return [r[0] for r in c.exec_driver_sql("EXPLAIN " + sql, tuple(binds))]
        return [r[3] for r in c.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, tuple(binds))]


def plan(repo: Repository, res_type: str, params: list[tuple[str, str]], *,
         sorted_by_index: bool = False) -> list[str]:
    """The plan of the first page of a search, as the server runs it: store/direct.py's SQL
    text for the shapes it writes out, search.py's compiled expression otherwise."""
    searcher, q = Searcher(repo.registry), parse((res_type,), params, repo.registry)
    if searcher.direct_ok(q):
        sql, binds = direct.page(q, 50, rank, searcher.compiler.in_rid_order, repo.is_postgres)
        return explain_text(repo, sql, binds, sorted_by_index=sorted_by_index)
    return explain(repo, searcher.page_query(q, 50), sorted_by_index=sorted_by_index)


def expression_plan(repo: Repository, res_type: str, params: list[tuple[str, str]], *,
                    sorted_by_index: bool = False) -> list[str]:
    """The plan of search.py's compiled expression for the page (what a restricted caller's
    search of the same shape runs)."""
    return explain(repo, Searcher(repo.registry).page_query(parse((res_type,), params, repo.registry), 50),
                   sorted_by_index=sorted_by_index)


def count_plan(repo: Repository, res_type: str, params: list[tuple[str, str]]) -> list[str]:
    return explain(repo, Searcher(repo.registry).count_query(parse((res_type,), params, repo.registry)))


def probes_seek_by_rid(lines: list[str]) -> None:
    """Each correlated probe looks up the candidate's own index rows (rid=?), never a range of
    the value index: at 100,000 people SQLite without statistics chose ix_date_range
    (pkey=? AND low>?) for a birthdate probe and took 7 s per search."""
    for i, line in enumerate(lines):
        if line.startswith("CORRELATED"):
            assert "rid=?" in lines[i + 1], "\n".join(lines)


DIRECT = ("patient by NHS number", "patient by family and birthdate",
          "observations of a patient by code and date", "medication requests of a patient", "two-level chain")


def test_the_common_hot_searches_run_as_direct_sql(community: Repository) -> None:
    searcher = Searcher(community.registry)
    for name, (res_type, params) in HOT.items():
        assert searcher.direct_ok(parse((res_type,), params, community.registry)) == (name in DIRECT), name


@pytest.mark.parametrize("name", list(HOT))
def test_hot_search_uses_indexes_only(community: Repository, name: str) -> None:
    res_type, params = HOT[name]
    for lines in (plan(community, res_type, params), expression_plan(community, res_type, params),
                  count_plan(community, res_type, params)):
        text_plan = "\n".join(lines)
        if community.is_postgres:
            assert "Seq Scan" not in text_plan, text_plan
            if len(params) > 1:  # the other clauses check the driver's candidates, never drive
                assert "SubPlan" in text_plan, text_plan
        else:
            assert not any(line.startswith("SCAN ") for line in lines), text_plan
            assert "ux_resources_type_id (res_type=?)" not in text_plan, text_plan
            probes_seek_by_rid(lines)


def test_a_page_of_a_common_code_is_read_off_the_index_in_rid_order(community: Repository) -> None:
    """No sort of all the matches: the first and the last page cost the same whatever the count."""
    for params, how in [(p, h) for p in ([("code", "http://loinc.org|8867-4")],
                                          [("code", "http://loinc.org|8867-4"), ("_cursor", "last")])
                        for h in (plan, expression_plan)]:
        lines = how(community, "Observation", params, sorted_by_index=True)
        text_plan = "\n".join(lines)
        if community.is_postgres:
            assert "Sort" not in text_plan and "ix_token_code" in text_plan, text_plan
        else:
            assert "COVERING INDEX ix_token_code (pkey=? AND code=? AND system=?)" in text_plan, text_plan
            assert "TEMP B-TREE" not in text_plan, text_plan


def test_total_of_a_code_is_counted_on_the_index_alone(community: Repository) -> None:
    lines = count_plan(community, "Observation", [("code", "http://loinc.org|8867-4")])
    text_plan = "\n".join(lines)
    assert "resources" not in text_plan, text_plan
    if not community.is_postgres:
        assert "COVERING INDEX ix_token_code" in text_plan, text_plan


def test_hot_searches_find_what_they_should(community: Repository) -> None:
    s = Searcher(community.registry)
    with community.reading() as conn:
        def ids(t: str, params: list[tuple[str, str]]) -> set[str]:
            return {h.res_id for h in s.run(conn, parse((t,), params, community.registry), 500).matches}
        assert ids("Patient", [("family", "smith"), ("birthdate", "1951-02-03")]) == {"p1"}
        assert ids("Patient", [("family", "brown"), ("birthdate", "1951-02-03")]) == set()
        assert len(ids(*HOT["observations of a patient by code and date"])) == 5
        assert len(ids(*HOT["two-level chain"])) == 150
        assert len(ids(*HOT["reverse chain"])) == 30


def test_content_search_uses_the_full_text_index(community: Repository) -> None:
    """_content drives from the full-text index (FTS5 MATCH on SQLite, the GIN index on
    PostgreSQL) and, beside a more selective clause, probes the candidate's own row by rid."""
    for params in ([("_content", "smith")], [("family", "smith"), ("_content", "smi")]):
        q = parse(("Patient",), params, community.registry)
        stmt = Searcher(community.registry).page_query(q, 50)
        sql = str(stmt.compile(community.engine, compile_kwargs={"literal_binds": True}))
        with community.engine.connect() as c:
            if community.is_postgres:  # only bitmap scans left: the GIN index must serve it
                c.execute(text("SET enable_seqscan = off"))
                c.execute(text("SET enable_indexscan = off"))
                lines = [r[0] for r in c.execute(text("EXPLAIN " + sql))]  # noqa: S608
            else:
                lines = [r[3] for r in c.execute(text("EXPLAIN QUERY PLAN " + sql))]  # noqa: S608
        text_plan = "\n".join(lines)
        if community.is_postgres:
            assert "Seq Scan" not in text_plan, text_plan
            if len(params) > 1:  # the probe: the candidate's own idx_content row by rid
                assert "SubPlan" in text_plan and "idx_content_pkey" in text_plan, text_plan
            else:
                assert "ix_content_words" in text_plan, text_plan
        else:
            fts = [line for line in lines if "idx_content_fts" in line]
            assert fts and all("VIRTUAL TABLE INDEX" in line and "M" in line.rsplit(":", 1)[1] for line in fts), text_plan
            assert not any(line.startswith("SCAN ") and "idx_content_fts" not in line for line in lines), text_plan
            if len(params) > 1:  # the probe seeks the candidate's rowid in the full-text index
                assert any(":=M" in line for line in fts), text_plan
        with community.reading() as conn:
            found = {h.res_id for h in Searcher(community.registry).run(conn, q, 100).matches}
        assert found == {f"p{i}" for i in range(1, 31, 2)}


@pytest.mark.parametrize("kind", ["contained", "container"])
def test_contained_search_uses_the_contained_keys_and_seeks_containers(community: Repository, kind: str) -> None:
    """A contained search drives from its own index rows (the contained keys) and reaches each
    contained resource and its container by primary key: no scan of contained or resources."""
    from carerecord.store.contained import queries

    TransactionProcessor(Interactions(community)).process({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "DiagnosticReport", "status": "final", "code": {"text": "x"},
                      "subject": {"reference": f"Patient/p{i}"}, "result": [{"reference": "#o"}],
                      "contained": [{"resourceType": "Observation", "id": "o", "status": "final",
                                     "code": {"coding": [{"system": "http://loinc.org", "code": f"c{i % 3}"}]}}]},
         "request": {"method": "POST", "url": "DiagnosticReport"}} for i in range(1, 31)]})
    q = parse(("Observation",), [("code", "http://loinc.org|c1"), ("status", "final"), ("_contained", "true"),
                                 ("_containedType", kind)], community.registry)
    page, total = queries(Searcher(community.registry), q, 50)
    for lines in (explain(community, page), explain(community, total)):
        text_plan = "\n".join(lines)
        if community.is_postgres:
            assert "Seq Scan" not in text_plan and "ix_token_code" in text_plan, text_plan
        else:
            assert not any(line.startswith("SCAN ") for line in lines), text_plan
            assert "ix_token_code (pkey=? AND code=? AND system=?)" in text_plan, text_plan
            probes_seek_by_rid(lines)
    with community.reading() as conn:
        hits = Searcher(community.registry).run(conn, q, 100).matches
    assert len(hits) == 10 and all((h.container is not None) == (kind == "contained") for h in hits)


@pytest.mark.parametrize("purpose", [Purpose.DIRECT_CARE, Purpose.SECONDARY_USE])
@pytest.mark.parametrize("level", ["system", "patient", "group"])
def test_export_pages_continue_on_an_index_and_sort_nothing(community: Repository, level: str,
                                                            purpose: Purpose) -> None:
    """A page of a bulk export (services/export/runner.py) continues from its cursor on an
    index, in that index's order, whatever the page: the (res_type, last_updated) index for a
    system or Patient export, the member's compartment for a Group export (never every resource
    of a type). For secondary use the national data opt-out is a seek per compartment row,
    however many patients opted out."""
    who = Principal(Kind.SYSTEM, "exporter", "exporter", ScopeSet.parse("system/*.rs"), "iss", "jti", 0,
                    purpose=purpose)
    types = ("Observation",) if level != "group" else ("Observation", "Condition")
    req = ExportRequest(level, "g" if level == "group" else None, types, 1_600_000_000_000_000,
                        "application/fhir+ndjson", "/$export")
    if level == "group":
        q = member_query("p1", community.registry, "http://example.org/fhir")
        q.cursor = paging.Cursor(paging.NEXT, (), 17).encode()
    else:
        q = type_query("Observation", community.registry, "http://example.org/fhir")
        q.cursor = paging.Cursor(paging.NEXT, (1_700_000_000_000_000,), 17).encode()
    lines = explain(community, page_searcher(Searcher(community.registry), who, req, q.cursor).page_query(q, 500),
                    sorted_by_index=True)
    text_plan = "\n".join(lines)
    if community.is_postgres:
        assert "Seq Scan" not in text_plan, text_plan
        assert ("ix_compartments_patient" if level == "group" else "ix_resources_type_updated") in text_plan, text_plan
        # The index has no rid (PostgreSQL's index entries point at heap tuples), so rows of one
        # time (one unit's writes) are put in rid order by an incremental sort, never all of them.
        full_sorts = [line for line in lines if line.strip().removeprefix("->  ").startswith("Sort  (")]
        assert not full_sorts, text_plan
        if "Incremental Sort" in text_plan:
            assert "Presorted Key: resources.last_updated" in text_plan, text_plan
        return
    assert not any(line.startswith("SCAN ") for line in lines) and "TEMP B-TREE" not in text_plan, text_plan
    if level == "group":
        assert "ix_compartments_patient (patient_id=?)" in text_plan, text_plan
        assert "ix_resources_type" not in text_plan, text_plan
    else:
        assert "ix_resources_type_updated (res_type=? AND last_updated>?)" in lines[0], text_plan
    for i, line in enumerate(lines):
        if line.startswith("CORRELATED"):
            assert "rid=?" in lines[i + 1] or "ref_id=?" in lines[i + 1], text_plan


def _system(purpose: Purpose = Purpose.DIRECT_CARE) -> Principal:
    return Principal(Kind.SYSTEM, "exporter", "exporter", ScopeSet.parse("system/*.rs"), "iss", "jti", 0,
                     purpose=purpose)


def test_everything_care_dates_are_seeks_per_compartment_row(community: Repository) -> None:
    """``$everything``'s start/end (store/care_dates.py) do not change what drives the page (the
    patient's compartment rows): each care-date test is a seek on the candidate's own index
    rows, never a walk of a date range of every resource."""
    types = tuple(sorted(set(model.patient_compartment()) | {"Patient"}))
    q = parse(types, [], community.registry)
    q.compartment = "p1"
    searcher = GuardedSearcher(Searcher(community.registry), Guard(_system()))
    care = care_condition(types, 1_600_000_000_000_000, 1_700_000_000_000_000)
    assert care is not None
    searcher.narrowing = [care]
    lines = explain(community, searcher.page_query(q, 50))
    text_plan = "\n".join(lines)
    if community.is_postgres:  # its planner has statistics: it may take (pkey, ..., rid) for a key with no rows
        assert "Seq Scan" not in text_plan and "ix_compartments_patient" in text_plan, text_plan
        subplans = [line for line in lines if line.strip().startswith("SubPlan")]
        assert subplans and text_plan.count("rid = resources.rid") >= len(subplans), text_plan
        return
    assert not any(line.startswith("SCAN ") for line in lines), text_plan
    assert "ix_compartments_patient (patient_id=?)" in text_plan, text_plan
    probes_seek_by_rid(lines)
    with community.reading() as conn:  # and it finds what it should: p1's Observations of 2020-2023
        found = searcher.everything(conn, q, 100, lambda t: False, [care])
    assert {h.res_type for h in found.matches} == {"Patient", "Observation"} and len(found.matches) == 4


def test_an_export_page_with_a_type_filter_still_continues_on_the_index(community: Repository) -> None:
    """A ``_typeFilter`` adds seeks on each candidate's own index rows to an export's page: the
    page still continues on the (res_type, last_updated) index in its order."""
    req = ExportRequest("system", None, ("Observation",), None, "application/fhir+ndjson", "/$export",
                        filters=(TypeFilter("Observation", "code=http://loinc.org|8867-4&value-quantity=ge62", "_typeFilter"),
                                 TypeFilter("Observation", "subject:Patient.name=smith", "_typeFilter")))
    q = type_query("Observation", community.registry, "http://example.org/fhir")
    q.cursor = paging.Cursor(paging.NEXT, (1_700_000_000_000_000,), 17).encode()
    filters = filter_queries(req, ("Observation",), community.registry, "http://example.org/fhir")
    searcher = page_searcher(Searcher(community.registry), _system(Purpose.SECONDARY_USE), req, q.cursor, filters)
    with community.reading() as conn:
        searcher.apply_filters(conn)
    lines = explain(community, searcher.page_query(q, 500), sorted_by_index=True)
    text_plan = "\n".join(lines)
    if community.is_postgres:
        assert "Seq Scan" not in text_plan and "ix_resources_type_updated" in text_plan, text_plan
        assert not [line for line in lines if line.strip().removeprefix("->  ").startswith("Sort  (")], text_plan
        return
    assert not any(line.startswith("SCAN ") for line in lines) and "TEMP B-TREE" not in text_plan, text_plan
    assert "ix_resources_type_updated (res_type=? AND last_updated>?)" in lines[0], text_plan
