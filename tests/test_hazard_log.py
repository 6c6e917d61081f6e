"""The clinical safety hazard log names, for each hazard, the tests that guard it
(docs/clinical-safety/hazard-log.md). A renamed or deleted test would leave a hazard unguarded
while the log still claims a guard: these tests keep the log and the suite in step."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOG = ROOT / "docs" / "clinical-safety" / "hazard-log.md"


def _rows() -> list[tuple[str, list[str]]]:
    """(hazard id, test references) for each row; ``::name`` continues the previous file."""
    rows = []
    for line in LOG.read_text(encoding="utf-8").splitlines():
        if not line.startswith("| H"):
            continue
        hazard = line.split("|")[1].strip()
        refs, last = [], ""
        for ref in re.findall(r"`([^`]+)`", line):
            if ref.startswith("::") and last:
                ref = last + ref
            if ref.startswith("tests/"):
                refs.append(ref)
                last = ref.partition("::")[0]
        rows.append((hazard, refs))
    return rows


def _functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}


def test_every_hazard_names_at_least_one_guarding_test() -> None:
    rows = _rows()
    assert len(rows) >= 30
    assert [h for h, refs in rows if not refs] == []
    ids = [h for h, _ in rows]
    assert len(ids) == len(set(ids)), "a hazard id is used twice"


def test_every_test_the_hazard_log_names_exists() -> None:
    missing = []
    for hazard, refs in _rows():
        for ref in refs:
            path, _, name = ref.partition("::")
            target = ROOT / path
            if not target.exists():
                missing.append(f"{hazard}: {ref} (no such file)")
            elif name and name.split("[")[0] not in _functions(target):
                missing.append(f"{hazard}: {ref} (no such test)")
    assert missing == []
