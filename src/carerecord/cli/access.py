"""``carerecord clients`` and ``carerecord users``: registering OAuth clients and sign-ins, and
minting a system token for tools; plus the demo community's persona sign-ins.

Secrets are printed once, to stdout, and never stored in clear: a client secret or a generated
private key cannot be shown again (register a new client instead).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

db_option = click.option("--database", help="SQLAlchemy URL (default: SQLite file in the data folder)")
dir_option = click.option("--data-dir", type=click.Path(path_type=Path), help="Data folder")


def _repo(database: str | None, data_dir: Path | None) -> tuple[Any, Any]:
    from carerecord.cli import _open, _settings

    settings = _settings(database=database, data_dir=data_dir)
    return settings, _open(settings)


@click.group()
def clients() -> None:
    """Register OAuth clients (systems and SMART apps) and mint system tokens."""


@clients.command("add")
@click.argument("name")
@click.option("--scope", required=True, help='Most it may be granted, e.g. "system/*.rs"')
@click.option("--jwks-key", "key", type=click.Choice(["ES384", "RS384"]), default=None, is_flag=False,
              flag_value="ES384", help="Generate a key pair for signed JWT assertions (default ES384) "
                                       "instead of a client secret")
@click.option("--app", "redirect_uris", multiple=True, metavar="REDIRECT_URI",
              help="Register a SMART app (authorisation code) with this redirect URI (repeatable)")
@click.option("--public", is_flag=True, help="A public app (PKCE only, no secret)")
@click.option("--purpose", type=click.Choice(["direct-care", "secondary-use"]), default="direct-care",
              show_default=True, help="What a system client reaches the record for: secondary use "
                                      "(analytics, research) leaves out every patient with a national "
                                      "data opt-out")
@db_option
@dir_option
def clients_add(name: str, scope: str, key: str | None, redirect_uris: tuple[str, ...], public: bool,
                purpose: str, database: str | None, data_dir: Path | None) -> None:
    """Register client NAME and print its credentials (shown once)."""
    from carerecord.access.clients import APP, SYSTEM, Clients
    from carerecord.access.scopes import ScopeError

    _settings, repo = _repo(database, data_dir)
    try:
        made = Clients(repo.engine).add(name, scope, kind=APP if redirect_uris else SYSTEM,
                                        redirect_uris=redirect_uris, secret=not public, key=key,
                                        purpose=purpose)
    except (ScopeError, ValueError) as e:
        raise click.UsageError(str(e)) from e
    click.echo(f"client_id: {made.client.client_id}")
    click.echo(f"scope: {made.client.scope}")
    click.echo(f"purpose: {made.client.purpose}")
    if made.secret:
        click.echo(f"client_secret: {made.secret}")
    if made.private_jwk:
        click.echo("private key (JWK; shown once, keep it secret):")
        click.echo(json.dumps(made.private_jwk))
        click.echo("private key (PEM):")
        click.echo(made.private_pem or "")


@clients.command("token")
@click.option("--scope", default="system/*.*", show_default=True)
@click.option("--seconds", type=int, default=3600, show_default=True)
@click.option("--base-url", help="The server's FHIR base URL (the token's audience); default from settings")
@db_option
@dir_option
def clients_token(scope: str, seconds: int, base_url: str | None, database: str | None,
                  data_dir: Path | None) -> None:
    """Print a system access token signed with the server's key (for tools and benchmarks)."""
    from carerecord.access.tokens import mint_system_token

    settings, repo = _repo(database, data_dir)
    audience = (base_url or settings.fhir_base()).rstrip("/")
    try:
        click.echo(mint_system_token(repo.engine, scope, audience=audience, seconds=seconds))
    except ValueError as e:
        raise click.UsageError(str(e)) from e


@click.group()
def users() -> None:
    """Sign-in accounts of staff, patients and proxies."""


@users.command("add")
@click.argument("username")
@click.option("--practitioner", help="Staff: their Practitioner id")
@click.option("--patient", help="A patient: their Patient id")
@click.option("--related-person", "related", multiple=True, help="A proxy: their RelatedPerson id(s)")
@click.password_option(help="Their password (asked for if not given)")
@db_option
@dir_option
def users_add(username: str, practitioner: str | None, patient: str | None, related: tuple[str, ...],
              password: str, database: str | None, data_dir: Path | None) -> None:
    """Add a sign-in for USERNAME linked to exactly one of --practitioner, --patient or
    --related-person."""
    from carerecord.access.users import Users

    links = [x for x in (practitioner, patient, related[0] if related else None) if x]
    if len(links) != 1:
        raise click.UsageError("give exactly one of --practitioner, --patient, --related-person")
    kind, ref = (("staff", f"Practitioner/{practitioner}") if practitioner else
                 ("patient", f"Patient/{patient}") if patient else ("proxy", f"RelatedPerson/{related[0]}"))
    _settings, repo = _repo(database, data_dir)
    grants = tuple(f"RelatedPerson/{r}" for r in related)
    Users(repo.engine).add(username, password, kind, ref, grants=grants)
    click.echo(f"Added {kind} {username} ({ref})")


def persona_bundle() -> dict[str, Any]:
    """The resources the demo personas need beyond the generated community, as a transaction."""
    from carerecord.demo import transaction
    from carerecord.demo.signins import extra_resources

    return transaction(extra_resources())


def demo_signins(repo: Any) -> None:
    """Add the demo personas' sign-ins (after :func:`persona_bundle` is loaded), skipping any
    that exist, so ``carerecord demo`` stays idempotent."""
    from carerecord.access.users import Users
    from carerecord.demo.signins import DEMO_PASSWORD, PERSONAS

    accounts = Users(repo.engine)
    added = 0
    for persona in PERSONAS:
        if accounts.by_username(persona.username) is None:
            accounts.add(persona.username, DEMO_PASSWORD, persona.kind, persona.fhir_user,
                         display=persona.description)
            added += 1
    if added:
        click.echo(f"Added {added} demo sign-ins (password {DEMO_PASSWORD!r}; see the README)")
