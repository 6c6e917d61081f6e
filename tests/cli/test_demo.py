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
