"""Where the time goes: cProfile (CPU time, not wall time, so other work on a shared machine does
not blur it) of one benchmark path, summed by area (validation, indexing, SQLAlchemy, the
driver, the HTTP server, ...) and listed by function.

    python -m benchmarks.profile load [--bundles 30] [--database URL]
    python -m benchmarks.profile read|create [--bundles 30] [--database URL] [--count 3000]
    python -m benchmarks.profile http-read|http-create [--bundles 30] [--seconds 5]
    python -m benchmarks.profile summarise FOLDED   # area shares of a py-spy --format raw file

``load`` runs the Loader; ``read``/``create`` call Repository.read and Interactions.create
in-process (no HTTP); ``http-*`` serve the app with uvicorn in this process (as
``carerecord serve --workers 1`` does) under wrk load, with 8 connections, and profile it.
The database is a fresh SQLite file unless ``--database`` names another (it must be empty).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import os
import pstats
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks.common import SYNTHEA, free_port, synthea_files

AREAS = (  # (area, substring of the code's file name); first match wins
    ("validation (fhir/validation*, primitive_checks)", ("fhir/validation", "fhir/primitive_checks",
                                                          "fhir/profiles")),
    ("search index extraction (fhir/indexing)", ("fhir/indexing", "fhir/dates")),
    ("reference scanning (fhir/references)", ("fhir/references",)),
    ("transaction processing (store/transaction, interactions)", ("store/transaction", "store/interactions")),
    ("store: prepare/repository", ("store/prepare", "store/repository", "store/records", "store/schema")),
    ("search (store/search, fhir/search_query)", ("store/search", "fhir/search")),
    ("database driver calls (sqlite3 / psycopg)", ("sqlite3", "psycopg", "do_execute", "do_commit",
                                                  "do_rollback", "fetchall_for_returning")),
    ("SQLAlchemy", ("sqlalchemy",)),
    ("HTTP server (uvicorn, h11, asyncio)", ("uvicorn", "h11", "asyncio", "selectors", "socket")),
    ("web framework (starlette)", ("starlette",)),
    ("API handlers (carerecord/api)", ("carerecord/api",)),
    ("loader (cli/load, gzip, JSON parse)", ("cli/load", "gzip", "zlib", "orjson.loads")),
    ("JSON serialisation (orjson.dumps)", ("orjson.dumps",)),
)


def area_of(func: tuple[str, int, str]) -> str:
    filename, _, name = func
    key = f"{filename}:{name}"
    if filename == "~":  # a C function: cProfile names it "<method 'x' of 'mod.Type' objects>"
        key = name
    for area, needles in AREAS:
        if any(n in key for n in needles):
            return area
    return "other"


def by_area(stats: pstats.Stats) -> list[tuple[str, float]]:
    """Own CPU time summed by area; a built-in that belongs to no area (dict.get, len, ...) is
    charged to the areas of its callers, in proportion to the time each spent in it."""
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    totals: dict[str, float] = {}
    for func, (_, _, tottime, _, callers) in raw.items():
        area = area_of(func)
        if area == "other" and func[0] == "~" and callers:
            weights = {c: v[2] for c, v in callers.items()}
            whole = sum(weights.values()) or 1.0
            for caller, w in weights.items():
                ca = area_of(caller)
                totals[ca] = totals.get(ca, 0.0) + tottime * w / whole
            continue
        totals[area] = totals.get(area, 0.0) + tottime
    return sorted(totals.items(), key=lambda kv: -kv[1])


def report(prof: cProfile.Profile, units: int, unit: str, top: int) -> None:
    stats = pstats.Stats(prof)
    total = sum(t for _, t in by_area(stats))
    print(f"\nCPU time by area ({units} {unit}s, {total / max(1, units) * 1e6:,.0f} us/{unit} under cProfile, "
          "which inflates many-small-call Python code several-fold; py-spy shares are truer):")
    for area, t in by_area(stats):
        print(f"  {t / total * 100:5.1f}%  {area}")
    print()
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


def _engine(url: str) -> Any:
    from carerecord.store.engine import make_engine, migrate

    engine = make_engine(url)
    migrate(engine)
    return engine


def _load(url: str, files: list[Path]) -> Any:
    from carerecord.cli.load import Loader, LoadReport
    from carerecord.store.interactions import Interactions
    from carerecord.store.repository import Repository

    repo = Repository(_engine(url))
    return Loader(Interactions(repo, "http://127.0.0.1:8080/fhir")), LoadReport(), repo


def summarise_folded(path: Path) -> list[tuple[str, float]]:
    """Area shares of a py-spy ``--format raw`` (folded stacks) file: each sample goes to the
    innermost frame that belongs to an area. py-spy samples, so unlike cProfile it does not
    inflate code that makes many small Python calls."""
    totals: dict[str, float] = {}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        area = "other"
        for frame in reversed(stack.split(";")):
            func, _, where = frame.partition(" (")
            a = area_of((where.rsplit(":", 1)[0], 0, func))
            if a != "other":
                area = a
                break
        totals[area] = totals.get(area, 0.0) + int(count)
    whole = sum(totals.values()) or 1.0
    return sorted(((a, t / whole) for a, t in totals.items()), key=lambda kv: -kv[1])


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["summarise"]:
        for area, share in summarise_folded(Path(args[1])):
            print(f"  {share * 100:5.1f}%  {area}")
        return
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", choices=("load", "read", "create", "http-read", "http-create"))
    p.add_argument("--bundles", type=int, default=30)
    p.add_argument("--database", help="an empty database (default: a fresh SQLite file)")
    p.add_argument("--count", type=int, default=3000, help="reads or creates for read/create")
    p.add_argument("--seconds", type=int, default=5, help="duration of the http-* load")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--no-audit", dest="audit", action="store_false", help="http-*: audit off (to compare)")
    a = p.parse_args(args)
    tmp = Path(tempfile.mkdtemp(prefix="carerecord-profile."))
    try:
        _profile(a, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _profile(a: argparse.Namespace, tmp: Path) -> None:
    url = a.database or f"sqlite:///{tmp / 'profile.db'}"
    files = synthea_files(SYNTHEA, a.bundles)
    prof = cProfile.Profile(time.process_time)

    loader, rep, repo = _load(url, files)
    block = loader if hasattr(loader, "__enter__") else contextlib.nullcontext(loader)
    if a.path == "load":
        prof.enable()
    with block:
        for f in files:
            loader.load_file(f, rep)
    if a.path == "load":
        prof.disable()
        report(prof, rep.total, "resource", a.top)
        return
    from benchmarks.run import PATIENT

    with repo.engine.connect() as c:
        keys = [tuple(r) for r in c.exec_driver_sql("SELECT res_type, res_id FROM resources").all()]
    random.Random(7).shuffle(keys)

    if a.path == "read":
        for k in keys[:200]:
            repo.read(*k)
        prof.enable()
        for i in range(a.count):
            repo.read(*keys[i % len(keys)])
        prof.disable()
        report(prof, a.count, "read", a.top)
    elif a.path == "create":
        from carerecord.store.interactions import Interactions

        ix = Interactions(repo, "http://127.0.0.1:8080/fhir")
        body = orjson.dumps(PATIENT)
        prof.enable()
        for _ in range(a.count):
            with repo.unit() as u:
                ix.create(u, orjson.loads(body), "Patient")
        prof.disable()
        report(prof, a.count, "create", a.top)
    else:
        _http(a, url, keys, prof, tmp)


def _http(a: argparse.Namespace, url: str, keys: list[Any], prof: cProfile.Profile, tmp: Path) -> None:
    import uvicorn

    from benchmarks.run import PATIENT
    from benchmarks.server import TOKEN_ENV
    from carerecord.access.tokens import mint_system_token
    from carerecord.api.app import create_app
    from carerecord.config import Settings

    port = free_port()
    app = create_app(Settings(database=url, host="127.0.0.1", port=port, audit=a.audit))
    # The real path: a signed system token (sign-in and the guard on), and audit as asked.
    os.environ[TOKEN_ENV] = mint_system_token(app.state.ctx.repo.engine, "system/*.*",
                                              audience=f"http://127.0.0.1:{port}/fhir", client_id="profile")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, lifespan="off"))
    lua = Path(__file__).with_name("lua")
    if a.path == "http-read":
        (tmp / "paths.txt").write_text("".join(f"/fhir/{t}/{i}\n" for t, i in keys[:5000]))
        script, args = lua / "read.lua", [str(tmp / "paths.txt")]
    else:
        (tmp / "patient.json").write_bytes(orjson.dumps(PATIENT))
        script, args = lua / "post.lua", ["/fhir/Patient", str(tmp / "patient.json")]
    result: dict[str, Any] = {}

    def drive() -> None:
        deadline = time.monotonic() + 60
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        out = subprocess.run(["wrk", "-t1", "-c8", f"-d{a.seconds}s", "-s", str(script),
                              f"http://127.0.0.1:{port}", "--", *args], capture_output=True, text=True,
                             timeout=a.seconds + 60, check=False)
        result["wrk"] = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
        server.should_exit = True

    # cProfile sees only the thread that enables it: the server runs in this (main) thread,
    # profiled from start to stop (start-up is small next to the load), and wrk is driven
    # from a helper thread.
    threading.Thread(target=drive, daemon=True).start()
    prof.enable()
    server.run()
    prof.disable()
    data = orjson.loads(result["wrk"][-1]) if result.get("wrk") else {"requests": 0}
    print("wrk:", data)
    report(prof, int(data["requests"]), "request", a.top)


if __name__ == "__main__":
    main()
