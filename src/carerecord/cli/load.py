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

import gc
import gzip
import multiprocessing
import os
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from carerecord.errors import FhirError, Issue
from carerecord.fhir.indexing import IndexRows
from carerecord.fhir.search_params import SearchParamRegistry
from carerecord.store.engine import analyze
from carerecord.store.interactions import Interactions
from carerecord.store.reindex import add_custom_parameters, stored_search_parameters
from carerecord.store.repository import Unit
from carerecord.store.transaction import Entry, TransactionProcessor, parse_entries, stage

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


# -- staging, in worker processes -----------------------------------------------------------------
# A file's items: ("error", where, why) | ("staged", where, kind, entries) | ("bundle", where, doc)
# | ("resource", where, resource). Staging (parsing, validation, index extraction) is most of
# the CPU of a load; workers do it for files in parallel while the main process writes.
Item = tuple[Any, ...]
_worker: dict[str, Any] = {}


def _init_worker(custom: list[dict[str, Any]], base: str | None) -> None:
    parent = os.getppid()

    def watch() -> None:  # if the writer dies (killed, crashed), do not linger
        while True:
            time.sleep(1)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
    registry = SearchParamRegistry()
    add_custom_parameters(registry, custom)
    _worker.update(registry=registry, base=base)
    gc.collect()
    gc.freeze()  # as the writer does (Loader.__enter__); this process ends with the load


def stage_doc(where: str, item: dict[str, Any], registry: SearchParamRegistry, base: str | None,
              pack: bool) -> Item:
    """Stage one transaction or batch Bundle (see :func:`stage_file`)."""
    try:
        kind, entries = stage(item, registry, base, templates=pack)
    except FhirError:
        return ("bundle", where, item)  # processing reports why
    if not pack:
        return ("entries", where, kind, entries)
    # Sent as JSON bytes and plain tuples (unpickling Entry objects cost the writer more than
    # staging saved it). A resource staged as a template travels only as its template; the
    # Bundle keeps a stand-in with its type and id, so the writer parses little.
    staged: list[tuple[Any, ...]] = []
    raw = item.get("entry") or []
    for e in entries:
        if e.staged is None:
            staged.append((e.res_id, None, None, None, None))
            continue
        staged.append((e.res_id, tuple(e.staged[0]), e.staged[1],
                       [(path, ref["reference"]) for path, ref in e.refs or ()], e.template))
        if e.template is not None and isinstance(e.resource, dict):
            stand_in = {"resourceType": e.resource["resourceType"]}
            if "id" in e.resource:
                stand_in["id"] = e.resource["id"]
            raw[e.index] = {**raw[e.index], "resource": stand_in}
    return ("staged", where, kind, orjson.dumps(item), staged)


def stage_people(start: int, stop: int, seed: int) -> list[Item]:
    """In a worker: generate and stage the demo community's people ``start`` to ``stop``."""
    from carerecord.demo import DEMO_TODAY, person_resources, transaction

    return [stage_doc("demo", transaction(person_resources(i, seed, DEMO_TODAY)),
                      _worker["registry"], _worker["base"], True) for i in range(start, stop)]


def stage_file(path: Path, registry: SearchParamRegistry | None = None,
               base: str | None = None, pack: bool = True) -> list[Item]:
    """Read, parse and stage one file (in a worker, or in the main process). ``pack``: return
    staged bundles as bytes and plain tuples, cheap to send between processes."""
    if registry is None:  # in a worker process
        registry, base = _worker["registry"], _worker["base"]
    try:
        data = _read(path)
    except OSError as exc:
        return [("error", str(path), f"cannot be read: {exc}")]
    out: list[Item] = []
    for where, item in _items(path, data):
        if isinstance(item, str):
            out.append(("error", where, item))
        elif item.get("resourceType") == "Bundle" and item.get("type") in ("transaction", "batch"):
            out.append(stage_doc(where, item, registry, base, pack))
        else:
            out.append(("resource", where, item))
    return out


def unpack(kind: str, doc: bytes, staged: list[tuple[Any, ...]]) -> list[Entry]:
    """Entries of a Bundle staged in a worker (see :func:`stage_file`)."""
    entries = parse_entries(orjson.loads(doc), kind)
    for (res_id, rows, comps, refs, content), e in zip(staged, entries, strict=True):
        e.res_id = res_id
        if rows is not None:
            e.staged = (IndexRows(*rows), comps)
            e.refs = [(path, {"reference": ref}) for path, ref in refs]
            e.template = content
    return entries


def describe(err: FhirError | list[Issue], loose_type: str | None = None) -> str:
    """The issues of a rejection as 'where: what' sentences. For a loose resource (wrapped in a
    one-entry Bundle by the loader) the wrapper is taken out of the locations."""
    out = []
    for issue in (err if isinstance(err, list) else err.issues)[:5]:
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
        # What the process holds already (the search parameters, the validator's tables) is
        # kept out of the collector's sight for the load (gc.freeze): full collections walked
        # it again and again, 20-odd of 56-97 ms in a 17 s load of the Synthea bundles, and
        # found nothing to free. Not when something else froze first (it stays as it was).
        self._froze = gc.get_freeze_count() == 0
        if self._froze:
            gc.collect()
            gc.freeze()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._end(commit=exc[0] is None)
        finally:
            if getattr(self, "_froze", False):
                gc.unfreeze()
                self._froze = False
        if exc[0] is None:
            analyze(self.ix.repo.engine)  # the planner's statistics, for what was loaded

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

    def load_files(self, files: list[Path], report: LoadReport, *, jobs: int = 0,
                   progress: Any = None) -> None:
        """Load ``files`` in order; ``jobs`` worker processes stage them ahead (0: this process
        stages each file itself)."""
        if jobs < 1 or len(files) < 2:
            for f in files:
                self.load_file(f, report)
                if progress:
                    progress(1)
            return
        self.load_parallel(stage_file, [(f,) for f in files], report, jobs=jobs, progress=progress)

    def load_parallel(self, fn: Any, tasks: list[tuple[Any, ...]], report: LoadReport, *,
                      jobs: int, progress: Any = None) -> None:
        """Run ``fn(*task)`` (a module-level function returning items) for each task in worker
        processes, a bounded window ahead, and write the results here in task order."""
        custom = stored_search_parameters(self.ix.repo.engine)
        ctx = multiprocessing.get_context("spawn")  # workers share nothing with our connections
        with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker,
                                 initargs=(custom, self.ix.base)) as pool:
            window: deque[Future[list[Item]]] = deque()
            todo = iter(tasks)
            for task in todo:
                window.append(pool.submit(fn, *task))
                if len(window) >= 4 * jobs:
                    break
            while window:
                items = window.popleft().result()
                nxt = next(todo, None)
                if nxt is not None:
                    window.append(pool.submit(fn, *nxt))
                self.load_items(items, report)
                if progress:
                    progress(len(items))

    def load_file(self, path: Path, report: LoadReport) -> None:
        """Load one file in this process (bundles are staged here, without a JSON round trip)."""
        self.load_items(stage_file(path, self.ix.repo.registry, self.ix.base, pack=False), report)

    def load_items(self, items: list[Item], report: LoadReport) -> None:
        """Write one file's items: staged bundles, bundles, and loose resources in batches."""
        report.files += 1
        pending: list[tuple[str, dict[str, Any]]] = []
        for item in items:
            if item[0] == "resource":
                pending.append((item[1], item[2]))
                if len(pending) >= self.batch_size:
                    self._flush(pending, report)
                    pending = []
                continue
            self._flush(pending, report)
            pending = []
            if item[0] == "error":
                report.rejected.append((item[1], item[2]))
            elif item[0] == "staged":
                self.load_staged(item[1], item[2], unpack(item[2], item[3], item[4]), report)
            elif item[0] == "entries":
                self.load_staged(item[1], item[2], item[3], report)
            else:
                self.load_bundle(item[1], item[2], report)
        self._flush(pending, report)

    def load_staged(self, where: str, kind: str, entries: list[Entry], report: LoadReport) -> None:
        try:
            if kind == "transaction":
                unit = self._group()
                with unit.savepoint():
                    self.processor.transaction(unit, entries)
                self._pending += len(entries)
                if self._pending >= self.group_size:
                    self._end()
            else:
                self._end()
                self.processor.process_staged(kind, entries, return_resources=False)
        except FhirError as err:
            report.rejected.append((where, describe(err)))
            return
        self._count(where, entries, report)

    @staticmethod
    def _count(where: str, entries: list[Entry], report: LoadReport) -> None:
        """Count the resources a processed Bundle wrote; a batch entry that failed alone (a
        transaction's failure is the whole Bundle's) is reported as rejected, with why."""
        for e in entries:
            if e.result is not None and e.result.status >= 400:
                report.rejected.append((where, describe(e.result.issues)))
            elif e.method in ("POST", "PUT") and isinstance(e.resource, dict):
                report.loaded[e.resource.get("resourceType", "?")] += 1

    def load_bundle(self, where: str, doc: dict[str, Any], report: LoadReport) -> None:
        if doc.get("type") != "transaction":  # a batch, or what staging could not read
            try:
                self._end()
                kind, entries = stage(doc, self.ix.repo.registry, self.ix.base)
                self.processor.process_staged(kind, entries, return_resources=False)
            except FhirError as err:
                report.rejected.append((where, describe(err)))
                return
            self._count(where, entries, report)
            return
        try:
            self._run(doc)
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
