"""`carerecord demo`: the demo community loads, validates and is not loaded twice."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

from sqlalchemy import Engine

from tests.cli.test_load import live_counts
from tests.conftest import wipe


def test_demo_loads_a_whole_community_once(engine: Engine, database_url: str) -> None:
    wipe(engine)
    run = [sys.executable, "-m", "carerecord.cli", "demo", "--no-serve", "--people", "40",
           "--database", database_url]
    first = subprocess.run(run, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    counts = live_counts(engine)
    assert counts["Patient"] == 40
    for kind in ("Organization", "Location", "Practitioner", "PractitionerRole", "Condition",
                 "Observation", "Encounter", "Appointment"):
        assert counts[kind] > 0, kind
    second = subprocess.run(run, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0 and "already loaded" in second.stdout
    assert live_counts(engine) == counts != Counter()


def _records(engine: Engine) -> dict[tuple[str, str], bytes]:
    """Every live resource without its meta (which holds the load time)."""
    import orjson
    from sqlalchemy import and_, select

    from carerecord.store import schema

    r, v = schema.resources, schema.resource_versions
    with engine.connect() as c:
        rows = c.execute(select(r.c.res_type, r.c.res_id, v.c.content).join(
            v, and_(v.c.rid == r.c.rid, v.c.version == r.c.version))).all()
    out = {}
    for t, i, content in rows:
        doc = orjson.loads(content)
        doc.pop("meta", None)
        out[(t, i)] = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
    return out


def test_parallel_demo_load_writes_the_same_records_as_a_sequential_one(engine: Engine,
                                                                       database_url: str) -> None:
    results = []
    for jobs in ("0", "2"):
        wipe(engine)
        run = [sys.executable, "-m", "carerecord.cli", "demo", "--no-serve", "--people", "600",
               "--jobs", jobs, "--database", database_url]
        done = subprocess.run(run, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        results.append(_records(engine))
    assert len(results[0]) > 6000
    assert results[0] == results[1]
