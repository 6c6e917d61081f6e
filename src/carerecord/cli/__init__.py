"""The ``carerecord`` command: serve, demo, load, migrate, check, clients, users.

Settings come from flags, then ``CARERECORD_*`` environment variables, then the config file
(``CARERECORD_CONFIG`` or ./carerecord.toml), then defaults (an SQLite file in the data folder).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from carerecord.config import Settings


def _settings(**flags: Any) -> Settings:
    return Settings(**{k: v for k, v in flags.items() if v is not None})


def _export(settings: Settings) -> None:
    """Pass the effective settings to uvicorn worker processes through the environment."""
    os.environ["CARERECORD_DATABASE"] = settings.database_url()
    os.environ["CARERECORD_HOST"] = settings.host
    os.environ["CARERECORD_PORT"] = str(settings.port)
    os.environ["CARERECORD_DATA_DIR"] = str(settings.data_dir)
    if settings.base_url:
        os.environ["CARERECORD_BASE_URL"] = settings.base_url


def _open(settings: Settings) -> Any:
    from carerecord.store.engine import make_engine, migrate
    from carerecord.store.repository import Repository

    engine = make_engine(settings.database_url())
    migrate(engine)
    return Repository(engine)


db_option = click.option("--database", help="SQLAlchemy URL (default: SQLite file in the data folder)")
dir_option = click.option("--data-dir", type=click.Path(path_type=Path), help="Data folder")


@click.group()
@click.version_option(package_name="carerecord")
def main() -> None:
    """carerecord: an integrated health and social care record (FHIR R4, UK Core)."""


@main.command()
@click.option("--host")
@click.option("--port", type=int)
@click.option("--workers", type=int)
@db_option
@dir_option
def serve(host: str | None, port: int | None, workers: int | None, database: str | None,
          data_dir: Path | None) -> None:
    """Serve the FHIR API (migrating the database first)."""
    settings = _settings(host=host, port=port, workers=workers, database=database, data_dir=data_dir)
    _serve(settings)


def _serve(settings: Settings) -> None:
    import uvicorn

    from carerecord.cli import workers

    _open(settings)
    _export(settings)
    click.echo(f"carerecord serving {settings.fhir_base()} (database {_safe(settings.database_url())})")
    # The workers' shared rate-limit buckets (api/limits.SharedBuckets): a file of this run only.
    shm = Path("/dev/shm")
    fd, rate_file = tempfile.mkstemp(prefix=f"carerecord-rate-{os.getpid()}-", dir=shm if shm.is_dir() else None)
    os.close(fd)
    os.environ["CARERECORD_RATE_FILE"] = rate_file
    options: dict[str, Any] = {"factory": True, "host": settings.host, "port": settings.port,
                               "workers": settings.workers, "log_level": "warning", "access_log": False}
    try:
        if settings.workers > 1 and workers.balanced():  # a listening socket per worker
            status = workers.serve(uvicorn.Config("carerecord.api.app:app_from_env", **options))
            if status:
                sys.exit(status)
        else:
            uvicorn.run("carerecord.api.app:app_from_env", **options)
    finally:
        os.unlink(rate_file)


def default_jobs() -> int:
    """Staging workers beside the writer: one per spare CPU (the writer keeps one busy)."""
    return max(0, (os.cpu_count() or 1) - 1)


def _safe(url: str) -> str:
    """A database URL without its password, for printing."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':')[0]}:***@{host}"
    return url


@main.command()
@click.option("--people", type=int, default=200, show_default=True, help="People in the community")
@click.option("--seed", type=int, default=2026, show_default=True)
@click.option("--host")
@click.option("--port", type=int)
@click.option("--workers", type=int)
@click.option("--no-serve", is_flag=True, help="Load the demo community and exit")
@click.option("--jobs", type=int, default=None,
              help="Worker processes that generate and validate people ahead of the writer "
                   "(default: CPUs - 1; 0: none)")
@db_option
@dir_option
def demo(people: int, seed: int, host: str | None, port: int | None, workers: int | None,
         no_serve: bool, jobs: int | None, database: str | None, data_dir: Path | None) -> None:
    """Load the demo integrated care system (idempotent) and serve it."""
    from carerecord.cli.access import demo_signins, persona_bundle
    from carerecord.cli.load import Loader, LoadReport, stage_people
    from carerecord.demo import generate
    from carerecord.store.interactions import Interactions

    settings = _settings(host=host, port=port, workers=workers, database=database, data_dir=data_dir)
    repo = _open(settings)
    loader = Loader(Interactions(repo, settings.fhir_base()))
    report = LoadReport()
    started = time.perf_counter()
    bundles = generate(people=people, seed=seed)
    first = next(bundles)
    marker = first["entry"][0]["request"]["url"].split("/")
    if _exists(repo, marker[0], marker[1]):
        click.echo("The demo community is already loaded in this database.")
    else:
        with _progress() as progress, loader:
            task = progress.add_task("Loading the demo community", total=people + 1)
            loader.load_bundle("demo", first, report)
            progress.advance(task)
            cpus = jobs if jobs is not None else default_jobs()
            step = 250
            if people >= 2 * step and cpus >= 1:  # generate and validate in workers, write here
                loader.load_parallel(stage_people, [(i, min(i + step, people), seed)
                                                    for i in range(0, people, step)],
                                     report, jobs=cpus, progress=lambda n: progress.advance(task, n))
            else:
                for doc in bundles:
                    loader.load_bundle("demo", doc, report)
                    progress.advance(task)
        _summary(report, time.perf_counter() - started, "the demo generator")
        if report.rejected:
            sys.exit(1)
    with loader:  # a sign-in for each persona of issue 4 (idempotent)
        loader.load_bundle("demo sign-ins", persona_bundle(), report)
    demo_signins(repo)
    if not no_serve:
        _serve(settings)


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--jobs", type=int, default=None,
              help="Worker processes that parse and validate files ahead of the writer "
                   "(default: CPUs - 1; 0: none)")
@db_option
@dir_option
def load(paths: tuple[Path, ...], jobs: int | None, database: str | None,
         data_dir: Path | None) -> None:
    """Load Bundles, resources or NDJSON from files or folders (.json/.ndjson, optionally .gz)."""
    from carerecord.cli.load import Loader, LoadReport, find_files
    from carerecord.store.interactions import Interactions

    settings = _settings(database=database, data_dir=data_dir)
    try:
        files = find_files(list(paths))
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    repo = _open(settings)
    loader = Loader(Interactions(repo, settings.fhir_base()))
    report = LoadReport()
    started = time.perf_counter()
    with _progress() as progress, loader:
        task = progress.add_task("Loading", total=len(files))
        loader.load_files(files, report, jobs=jobs if jobs is not None else default_jobs(),
                          progress=lambda n: progress.advance(task, n))
    _summary(report, time.perf_counter() - started)
    if report.rejected:
        sys.exit(1)


@main.command()
@db_option
@dir_option
def migrate(database: str | None, data_dir: Path | None) -> None:
    """Bring the database schema to the newest revision."""
    from carerecord.store.engine import make_engine
    from carerecord.store.engine import migrate as do_migrate

    settings = _settings(database=database, data_dir=data_dir)
    rev = do_migrate(make_engine(settings.database_url()))
    click.echo(f"Database {_safe(settings.database_url())} is at revision {rev}")


@main.command()
@click.option("--type", "types", multiple=True, help="Only resources of this type (repeatable)")
@db_option
@dir_option
def reindex(types: tuple[str, ...], database: str | None, data_dir: Path | None) -> None:
    """Rebuild search indexes, e.g. after adding a custom SearchParameter."""
    from sqlalchemy import func, select

    from carerecord.store import schema
    from carerecord.store.reindex import reindex as do_reindex

    settings = _settings(database=database, data_dir=data_dir)
    repo = _open(settings)
    r = schema.resources
    with repo.engine.connect() as conn:
        q = select(func.count()).select_from(r).where(r.c.deleted.is_(False))
        if types:
            q = q.where(r.c.res_type.in_(types))
        total = conn.execute(q).scalar_one()
    started = time.perf_counter()
    with _progress() as progress:
        task = progress.add_task("Reindexing", total=total)
        n = do_reindex(repo, list(types) or None, progress=lambda k: progress.advance(task, k))
    click.echo(f"Reindexed {n} resources in {time.perf_counter() - started:.1f} s")


@main.command()
@db_option
@dir_option
@click.option("--anchors", "anchor_files", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A file (a log) holding lines printed by `carerecord audit-anchor`: each anchored "
                   "audit row must still be there, unchanged")
def check(database: str | None, data_dir: Path | None, anchor_files: tuple[Path, ...]) -> None:
    """Verify the store's integrity (exit status 1 on any problem)."""
    from carerecord.access.audit_store import Anchor, check_anchors, check_chain
    from carerecord.store.engine import current_revision, make_engine
    from carerecord.store.integrity import check_integrity

    settings = _settings(database=database, data_dir=data_dir)
    engine = make_engine(settings.database_url())
    if current_revision(engine) is None:
        raise click.ClickException("The database has no carerecord schema; run `carerecord migrate`")
    problems, counts = check_integrity(engine)
    audit_problems, audit_counts = check_chain(engine)  # the audit trail's hash chain
    problems, counts = problems + audit_problems, {**counts, **audit_counts}
    if anchor_files:
        anchors = [a for f in anchor_files for a in Anchor.find(f.read_text(errors="replace"))]
        if not anchors:
            raise click.ClickException("No `carerecord-audit-anchor` lines in " + ", ".join(map(str, anchor_files)))
        problems += check_anchors(engine, anchors)
        counts["audit anchors checked"] = len(anchors)
    for name, n in counts.items():
        click.echo(f"{name:>24}: {n}")
    for p in problems:
        click.echo(f"PROBLEM: {p}", err=True)
    click.echo("OK: no problems found" if not problems else f"{len(problems)} problem(s) found")
    if problems:
        sys.exit(1)


@main.command("audit-anchor")
@db_option
@dir_option
def audit_anchor(database: str | None, data_dir: Path | None) -> None:
    """Print the audit trail's newest row (per shard) as anchor lines. Keep them where the
    database's owner cannot change them (e.g. ship them to a log host from cron): `carerecord
    check --anchors FILE` then finds rows removed from the end of the trail, which the hash
    chain alone cannot show."""
    from carerecord.access.audit_store import heads
    from carerecord.store.engine import make_engine

    settings = _settings(database=database, data_dir=data_dir)
    for anchor in heads(make_engine(settings.database_url())):
        click.echo(anchor.line())


def _exists(repo: Any, res_type: str, res_id: str) -> bool:
    from carerecord.errors import Gone, NotFound

    try:
        repo.read(res_type, res_id)
        return True
    except (NotFound, Gone):
        return False


def _progress() -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), transient=False)


def _summary(report: Any, seconds: float, source: str | None = None) -> None:
    rate = report.total / seconds if seconds > 0 else 0.0
    click.echo(f"Loaded {report.total} resources from {source or f'{report.files} file(s)'} "
               f"in {seconds:.1f} s ({rate:,.0f} resources/s)")
    for t, n in sorted(report.loaded.items(), key=lambda kv: -kv[1]):
        click.echo(f"  {t:<28}{n:>8}")
    if report.rejected:
        click.echo(f"Rejected {len(report.rejected)}:", err=True)
        for where, why in report.rejected[:50]:
            click.echo(f"  {where}: {why}", err=True)
        if len(report.rejected) > 50:
            click.echo(f"  ... and {len(report.rejected) - 50} more", err=True)


def _register_access_commands() -> None:
    from carerecord.cli.access import clients, users

    main.add_command(clients)
    main.add_command(users)


_register_access_commands()
