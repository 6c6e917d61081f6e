"""``carerecord load``: transaction or batch Bundles, single resources and NDJSON, from files or
folders, plain or gzip-compressed (.json, .json.gz, .ndjson, .ndjson.gz).

Each Bundle is all or nothing: it runs under its own SAVEPOINT, so a bad one is rolled back
alone. Bundles are committed in groups of about 2,000 resources, because a commit costs
milliseconds (WAL checkpoints) while a small bundle's writes cost less; a crash loses at most
the uncommitted group, never part of a bundle. NDJSON and single resources are written in
bundles of up to 500, each resource with update-as-create when it has an id. Nothing is
skipped silently: every rejected file, entry or line is reported with why.
"""

from __future__ import annotations

import gzip
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from carerecord.errors import FhirError
from carerecord.store.interactions import Interactions
from carerecord.store.repository import Unit
from carerecord.store.transaction import TransactionProcessor, parse_entries

SUFFIXES = (".json", ".json.gz", ".ndjson", ".ndjson.gz")


@dataclass
class LoadReport:
    loaded: Counter[str] = field(default_factory=Counter)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (where, why)
    files: int = 0

    @property
    def total(self) -> int:
        return sum(self.loaded.values())


def find_files(paths: list[Path]) -> list[Path]:
    """All loadable files under ``paths`` (folders recursively), in a stable order."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.name.endswith(SUFFIXES))
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"No such file or folder: {p}")
    return out


def _read(path: Path) -> bytes:
    if path.name.endswith(".gz"):
        with gzip.open(path, "rb") as f:
            return f.read()
    return path.read_bytes()


def _items(path: Path, data: bytes) -> Iterator[tuple[str, dict[str, Any] | str]]:
    """(where, resource) pairs of a file, or (where, error text) for lines that do not parse."""
    if ".ndjson" in path.name:
        for n, line in enumerate(data.splitlines(), 1):
            if line.strip():
                try:
                    yield f"{path}:{n}", orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    yield f"{path}:{n}", f"not valid JSON: {exc}"
        return
    try:
        yield str(path), orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        yield str(path), f"not valid JSON: {exc}"


def describe(err: FhirError, loose_type: str | None = None) -> str:
    """The issues of a rejection as 'where: what' sentences. For a loose resource (wrapped in a
    one-entry Bundle by the loader) the wrapper is taken out of the locations."""
    out = []
    for issue in err.issues[:5]:
        text = issue.diagnostics
        where = issue.expression[0] if issue.expression else ""
        if loose_type:
            text = re.sub(r"^Bundle\.entry\[0\]: ", "", text)
            where = re.sub(r"^Bundle\.entry\[0\]\.resource", loose_type, where)
        out.append(f"{where}: {text}" if where else text)
    return "; ".join(out)


class Loader:
    """Loads files through the same transaction path as the REST API. Use as a context
    manager: leaving the block commits the last group (or rolls it back on an error)."""

    def __init__(self, interactions: Interactions, batch_size: int = 500,
                 group_size: int = 2000) -> None:
        self.ix = interactions
        self.processor = TransactionProcessor(interactions)
        self.batch_size = batch_size
        self.group_size = group_size
        self._cm: Any = None
        self._unit: Unit | None = None
        self._pending = 0

    def __enter__(self) -> Loader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._end(commit=exc[0] is None)

    def _end(self, commit: bool = True) -> None:
        if self._cm is not None:
            cm, self._cm, self._unit, self._pending = self._cm, None, None, 0
            if commit:
                cm.__exit__(None, None, None)
            else:
                cm.__exit__(RuntimeError, RuntimeError("load aborted"), None)

    def _group(self) -> Unit:
        if self._unit is None:
            self._cm = self.ix.repo.unit()
            self._unit = self._cm.__enter__()
        return self._unit

    def _run(self, doc: dict[str, Any]) -> None:
        """One transaction Bundle under a savepoint of the current group."""
        unit = self._group()
        with unit.savepoint():
            self.processor.transaction(unit, parse_entries(doc, "transaction"))
        self._pending += len(doc.get("entry") or [])
        if self._pending >= self.group_size:
            self._end()

    def load_file(self, path: Path, report: LoadReport) -> None:
        report.files += 1
        try:
            data = _read(path)
        except OSError as exc:
            report.rejected.append((str(path), f"cannot be read: {exc}"))
            return
        pending: list[tuple[str, dict[str, Any]]] = []
        for where, item in _items(path, data):
            if isinstance(item, str):
                report.rejected.append((where, item))
            elif item.get("resourceType") == "Bundle" and item.get("type") in ("transaction", "batch"):
                self._flush(pending, report)
                pending = []
                self.load_bundle(where, item, report)
            else:
                pending.append((where, item))
                if len(pending) >= self.batch_size:
                    self._flush(pending, report)
                    pending = []
        self._flush(pending, report)

    def load_bundle(self, where: str, doc: dict[str, Any], report: LoadReport) -> None:
        try:
            if doc.get("type") == "transaction":
                self._run(doc)
            else:
                self._end()
                self.processor.process(doc, return_resources=False)
        except FhirError as err:
            report.rejected.append((where, describe(err)))
            return
        for e in doc.get("entry") or []:
            if e.get("request", {}).get("method") in ("POST", "PUT"):
                report.loaded[e["resource"]["resourceType"]] += 1

    def _flush(self, items: list[tuple[str, dict[str, Any]]], report: LoadReport) -> None:
        """Write loose resources as one transaction; if it fails, fall back to one at a time so
        a bad resource only rejects itself."""
        if not items:
            return
        entries = []
        for _, r in items:
            t = r.get("resourceType", "")
            req = {"method": "PUT", "url": f"{t}/{r['id']}"} if r.get("id") else {"method": "POST", "url": t}
            entries.append({"resource": r, "request": req})
        try:
            self._run({"resourceType": "Bundle", "type": "transaction", "entry": entries})
            for _, r in items:
                report.loaded[r.get("resourceType", "?")] += 1
            return
        except FhirError:
            pass
        for (where, r), entry in zip(items, entries, strict=True):
            try:
                self._run({"resourceType": "Bundle", "type": "transaction", "entry": [entry]})
                report.loaded[r.get("resourceType", "?")] += 1
            except FhirError as err:
                report.rejected.append((where, describe(err, r.get("resourceType"))))
