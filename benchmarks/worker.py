"""Measurements that run in a child process of their own, so each starts with a clean heap and
its CPU time is its own. Each prints one JSON object on the last line of stdout.

    python -m benchmarks.worker loader URL FILE...
        carerecord.cli.load.Loader on a migrated, empty database, as ``carerecord load`` runs it
        (files staged by worker processes ahead of the writer, as many as it starts by default).
    python -m benchmarks.worker raw --sqlite PATH [--postgres URL] --create-body FILE --seconds S FILE...
        the raw limits of raw.py; the bundles are prepared once, before any clock starts.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

import orjson


def loader(url: str, files: list[Path]) -> dict[str, Any]:
    from carerecord.cli.load import Loader, LoadReport
    from carerecord.config import Settings
    from carerecord.store.engine import make_engine, migrate
    from carerecord.store.interactions import Interactions
    from carerecord.store.repository import Repository

    engine = make_engine(url)
    migrate(engine)
    load = Loader(Interactions(Repository(engine), Settings(database=url).fhir_base()))
    try:
        from carerecord.cli import default_jobs

        jobs = default_jobs()
    except ImportError:  # before staging workers existed
        jobs = 0
    report = LoadReport()
    # A Loader that groups bundles commits the last group when its block ends: inside the clock.
    block = load if hasattr(load, "__enter__") else contextlib.nullcontext(load)
    start, cpu, kids = time.perf_counter(), time.process_time(), _children_cpu()
    with block:
        if hasattr(load, "load_files"):
            load.load_files(files, report, jobs=jobs)
        else:
            jobs = 0
            for f in files:
                load.load_file(f, report)
    seconds, cpu, kids = time.perf_counter() - start, time.process_time() - cpu, _children_cpu() - kids
    engine.dispose()
    return {"resources": report.total, "seconds": seconds, "cpu_seconds": cpu + kids,
            "writer_cpu_seconds": cpu, "staging_cpu_seconds": kids, "jobs": jobs,
            "rate": report.total / seconds, "rejected": [list(r) for r in report.rejected[:5]],
            "rejected_count": len(report.rejected)}


def _children_cpu() -> float:
    """CPU seconds of reaped child processes (the staging workers, once their pool has shut down)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def raw(sqlite_path: str | None, pg_url: str | None, create_body: bytes, seconds: float,
        files: list[Path]) -> dict[str, Any]:
    import gzip

    from benchmarks import raw as r
    from carerecord.store.engine import make_engine, migrate

    start = time.perf_counter()
    bundles = r.prepare_all([gzip.decompress(f.read_bytes()) for f in files])
    patient = r.create_rows(create_body)
    keys = [(row[1], row[2]) for b in bundles for row in b.tables["resources"]]
    random.Random(7).shuffle(keys)
    keys = keys[:5000]
    out: dict[str, Any] = {"prepare_seconds": time.perf_counter() - start}
    targets = [("sqlite", f"sqlite:///{sqlite_path}")] if sqlite_path else []
    if pg_url:
        targets.append(("postgresql", pg_url))
    for name, url in targets:
        engine = make_engine(url)
        migrate(engine)
        engine.dispose()
        if name == "sqlite":
            assert sqlite_path is not None
            bulk = r.sqlite_bulk(sqlite_path, bundles)
            reads = r.sqlite_reads(sqlite_path, keys, seconds)
            creates = r.sqlite_creates(sqlite_path, patient, seconds)
        else:
            bulk = r.postgres_bulk(url, bundles)
            reads = r.postgres_reads(url, keys, seconds)
            creates = r.postgres_creates(url, patient, seconds)
            out[name] = {"bulk": bulk, "reads": reads, "creates": creates,
                         "bulk_copy": r.postgres_copy(url, bundles)}
            continue
        out[name] = {"bulk": bulk, "reads": reads, "creates": creates}
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.worker")
    sub = p.add_subparsers(dest="cmd", required=True)
    lp = sub.add_parser("loader")
    lp.add_argument("url")
    lp.add_argument("files", nargs="+", type=Path)
    rp = sub.add_parser("raw")
    rp.add_argument("--sqlite")
    rp.add_argument("--postgres")
    rp.add_argument("--create-body", type=Path, required=True)
    rp.add_argument("--seconds", type=float, default=2.0)
    rp.add_argument("files", nargs="+", type=Path)
    a = p.parse_args(argv)
    if a.cmd == "loader":
        result = loader(a.url, a.files)
    else:
        result = raw(a.sqlite, a.postgres, a.create_body.read_bytes(), a.seconds, a.files)
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
