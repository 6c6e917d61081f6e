"""The ``_content`` index inside a write unit. On SQLite the store holds a unit's FTS5 rows back
until its commit (repository.Unit.flush_text: FTS5 starts a new segment at every savepoint, and
group commit runs each request's job under one). Whatever the unit does in between must find
the index as if every row had been written at once: a ``_content`` search, a rolled-back block,
a resource written twice; and a batch of jobs writes its rows in one statement."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine

from carerecord.errors import Invalid
from carerecord.fhir.search_query import parse
from carerecord.store.interactions import Interactions
from carerecord.store.repository import Repository
from carerecord.store.search import Searcher


def patient(family: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": family}], **extra}


def content_ids(repo: Repository, word: str, conn: Any = None) -> list[str]:
    q = parse(("Patient",), [("_content", word)], repo.registry)
    if conn is not None:
        return [h.res_id for h in Searcher(repo.registry).run(conn, q, 50).matches]
    with repo.reading() as c:
        return [h.res_id for h in Searcher(repo.registry).run(c, q, 50).matches]


def fts_intact(engine: Engine) -> None:
    """FTS5's own check that its index agrees with idx_content (raises if not)."""
    if engine.dialect.name != "sqlite":
        return
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO idx_content_fts(idx_content_fts, rank) VALUES ('integrity-check', 1)")


def test_a_content_search_inside_the_unit_finds_what_it_wrote(repo: Repository) -> None:
    ix = Interactions(repo)
    with repo.unit() as unit:
        first = ix.create(unit, patient("Zebedee"), "Patient")
        again = ix.create(unit, patient("Zebedee"), "Patient", if_none_exist="_content=zebedee")
        assert first.status == 201 and again.status == 200
        assert again.stored.res_id == first.stored.res_id
        assert content_ids(repo, "zebedee", unit.conn) == [first.stored.res_id]
    assert content_ids(repo, "zebedee") == [first.stored.res_id]
    fts_intact(repo.engine)


def test_a_rolled_back_block_keeps_the_rows_written_before_it(repo: Repository) -> None:
    """The block's search wrote the earlier row into FTS5 inside the block; the rollback took it
    out again, so it must be written once more at the commit (and the block's own row never)."""
    with repo.unit() as unit:
        alpha = unit.create(patient("Alphonse"))
        with pytest.raises(Invalid), unit.savepoint():
            assert content_ids(repo, "alphonse", unit.conn) == [alpha.res_id]
            unit.create(patient("Bravura"))
            raise Invalid("refused after writing")
        gamma = unit.create(patient("Gamaliel"))
    assert content_ids(repo, "alphonse") == [alpha.res_id]
    assert content_ids(repo, "bravura") == []
    assert content_ids(repo, "gamaliel") == [gamma.res_id]
    fts_intact(repo.engine)


def test_a_resource_written_twice_in_one_unit_is_found_by_its_last_words(repo: Repository) -> None:
    with repo.unit() as unit:
        unit.update("Patient", "twice", patient("Charlemagne", id="twice"))
        unit.update("Patient", "twice", patient("Delphine", id="twice"))
        unit.create(patient("Ermengarde"))
        unit.delete("Patient", "twice")
        unit.update("Patient", "twice", patient("Fulbert", id="twice"))
    assert content_ids(repo, "charlemagne") == []
    assert content_ids(repo, "delphine") == []
    assert content_ids(repo, "fulbert") == ["twice"]
    assert len(content_ids(repo, "ermengarde")) == 1
    fts_intact(repo.engine)


def test_a_batch_of_jobs_writes_its_fts5_rows_at_the_commit(repo: Repository) -> None:
    """Eight jobs under savepoints of their own (as a write batch runs them): their FTS5 rows
    are written after the last savepoint, together, so FTS5 makes one segment, not eight."""
    if repo.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's GIN index is written with idx_content")
    statements: list[str] = []
    with repo.unit() as unit:
        driver = unit.cur.connection
        driver.set_trace_callback(statements.append)
        for n in range(8):
            with unit.savepoint():
                unit.create(patient(f"Batch{n}"))
    driver.set_trace_callback(None)
    fts = [i for i, s in enumerate(statements) if s.startswith("INSERT INTO idx_content_fts")]
    released = [i for i, s in enumerate(statements) if s.startswith("RELEASE SAVEPOINT")]
    assert len(released) == 8 and len(fts) == 8  # (executemany is traced once a row)
    assert min(fts) > max(released)
    between = [s for s in statements[fts[0]:fts[-1] + 1] if not s.startswith("--")]  # (FTS5's own)
    assert len(between) == 8  # one statement, nothing else in between
    for n in range(8):
        assert len(content_ids(repo, f"batch{n}")) == 1
    fts_intact(repo.engine)
