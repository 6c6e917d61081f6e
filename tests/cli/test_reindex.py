"""A custom SearchParameter plus `carerecord reindex` makes older data searchable."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import Engine

from carerecord.errors import Invalid
from carerecord.fhir.search_query import parse
from carerecord.store.repository import Repository
from tests.conftest import wipe

ETHNIC = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory"
SP = {"resourceType": "SearchParameter", "url": "https://example.org/fhir/SearchParameter/ethnicity",
      "name": "Ethnicity", "status": "active", "description": "Ethnic category", "code": "ethnicity",
      "base": ["Patient"], "type": "token",
      "expression": f"Patient.extension.where(url='{ETHNIC}').value"}


def patient(code: str) -> dict[str, object]:
    return {"resourceType": "Patient", "extension": [{"url": ETHNIC, "valueCodeableConcept": {
        "coding": [{"system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-EthnicCategoryEngland",
                    "code": code}]}}]}


def ids(repo: Repository, params: list[tuple[str, str]]) -> set[str]:
    q = parse(("Patient",), params, repo.registry)
    assert not q.unknown, q.unknown
    with repo.reading() as conn:
        return {h.res_id for h in repo_searcher(repo).run(conn, q, 100).matches}


def repo_searcher(repo: Repository):  # type: ignore[no-untyped-def]
    from carerecord.store.search import Searcher

    return Searcher(repo.registry)


def test_custom_search_parameter_finds_old_data_after_reindex(engine: Engine, database_url: str) -> None:
    wipe(engine)
    repo = Repository(engine)
    old = repo.create(patient("G"))
    repo.create(patient("A"))
    assert parse(("Patient",), [("ethnicity", "G")], repo.registry).unknown == ["ethnicity"]
    repo.create(dict(SP))
    new = repo.create(patient("G"))  # written after the parameter: indexed at once
    assert ids(repo, [("ethnicity", "G")]) == {new.res_id}
    done = subprocess.run([sys.executable, "-m", "carerecord.cli", "reindex", "--database", database_url],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    fresh = Repository(engine)  # a restarted server loads stored SearchParameters
    assert ids(fresh, [("ethnicity", "G")]) == {old.res_id, new.res_id}


def test_unusable_search_parameter_is_refused(repo: Repository) -> None:
    with pytest.raises(Invalid) as err:
        repo.create({**SP, "expression": "Patient.extension.where(url="})
    assert "cannot be used for searching" in err.value.issues[0].diagnostics


def test_reindex_rebuilds_the_text_and_content_words(engine: Engine, database_url: str) -> None:
    """Data written before the _content index (migration 0009) is found after reindex, and the
    narrative words of _text survive it (they are not made by the parameter extraction)."""
    from sqlalchemy import text

    from carerecord.store import schema

    wipe(engine)
    repo = Repository(engine)
    p = repo.create({"resourceType": "Patient", "name": [{"family": "Brontë"}],
                     "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">Hoist user</div>'}})
    with engine.begin() as c:  # as if written before the index existed
        c.execute(schema.idx_content.delete())
    assert ids(repo, [("_content", "bronte")]) == set()
    done = subprocess.run([sys.executable, "-m", "carerecord.cli", "reindex", "--database", database_url],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert ids(repo, [("_content", "bronte")]) == {p.res_id}
    assert ids(repo, [("_content", "hoist")]) == {p.res_id}
    assert ids(repo, [("_text", "hoist")]) == {p.res_id}
    with engine.connect() as c:  # one row of words per resource, written once
        assert c.execute(text("SELECT count(*) FROM idx_content")).scalar_one() == 1
