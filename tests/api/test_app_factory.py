"""The server's app factory (what ``carerecord serve`` runs in each worker)."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
from sqlalchemy import Engine

from carerecord.api.app import app_from_env


def test_the_factory_puts_what_the_server_holds_out_of_the_collectors_sight(
        engine: Engine, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full collection walked the server's long-lived structures under load and stopped the
    event loop for 70-84 ms each time; the factory freezes them once built, so a collection
    afterwards examines only what was made since (``engine``: the suite's database, migrated)."""
    monkeypatch.setenv("CARERECORD_DATABASE", database_url)
    monkeypatch.setenv("CARERECORD_DATA_DIR", str(tmp_path))
    gc.unfreeze()
    app = app_from_env()
    try:
        assert app.state.ctx.repo.registry is not None
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # the registry and the validator's tables at least
        # what is frozen is not among the objects a collection examines
        assert all(o is not app.state.ctx for o in gc.get_objects(generation=2))
    finally:
        gc.unfreeze()  # the rest of the test session collects as before
        app.state.ctx.repo.engine.dispose()
