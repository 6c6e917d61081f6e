"""Limits over HTTP (api/limits.py): an oversized Bundle or body is a 413 OperationOutcome, a
client past its rate a 429 with Retry-After, and the token bucket refills with time."""

from __future__ import annotations

import multiprocessing
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from starlette.testclient import TestClient

from carerecord.access.grants import Grantee
from carerecord.access.tokens import AccessTokens
from carerecord.api.app import create_app
from carerecord.api.limits import Buckets, SharedBuckets
from carerecord.config import Settings
from carerecord.store.engine import make_engine
from carerecord.store.repository import Repository
from tests.api.conftest import outcome

BASE = "http://testserver/fhir"


def test_a_bundle_over_the_entry_limit_is_413(client: httpx.Client) -> None:
    entry = {"request": {"method": "GET", "url": "Patient/x"}}
    r = client.post("", json={"resourceType": "Bundle", "type": "batch", "entry": [entry] * 10_001})
    outcome(r, 413, "too-long")


def test_a_bucket_gives_its_burst_then_asks_to_wait_then_refills() -> None:
    buckets = Buckets(rate=2, burst=3)
    assert [buckets.take("app", 100.0) for _ in range(3)] == [0, 0, 0]
    assert buckets.take("app", 100.0) == 0.5
    assert buckets.take("other-app", 100.0) == 0  # one client's bucket is not another's
    assert buckets.take("app", 100.6) == 0


def _user_token(engine: Engine) -> str:
    tokens = AccessTokens(engine, "http://testserver", BASE)
    return tokens.mint("busy-app", "patient/*.cruds", Grantee("patient", "Patient/p1", patients=("p1",)), 300)[0]


def test_a_client_past_its_rate_gets_429_with_retry_after_and_a_large_body_413(engine: Engine) -> None:
    settings = Settings(database="sqlite://", base_url=BASE, rate_per_second=0.5, rate_burst=2, max_request_bytes=1000)
    with TestClient(create_app(settings, Repository(engine))) as app:
        auth = {"Authorization": f"Bearer {_user_token(engine)}"}
        assert app.get("/fhir/Patient/p1", headers=auth).status_code == 404
        assert app.get("/fhir/Patient/p1", headers=auth).status_code == 404
        r = app.get("/fhir/Patient/p1", headers=auth)
        assert r.status_code == 429
        assert r.json()["issue"][0]["code"] == "throttled"
        assert int(r.headers["retry-after"]) >= 1
    settings = Settings(database="sqlite://", base_url=BASE, max_request_bytes=1000)
    with TestClient(create_app(settings, Repository(engine))) as app:
        auth = {"Authorization": f"Bearer {_user_token(engine)}"}
        r = app.post("/fhir/Observation", headers={**auth, "Content-Type": "application/fhir+json"},
                     content=b"{" + b" " * 5000 + b"}")
        assert r.status_code == 413
        assert r.json()["issue"][0]["code"] == "too-long"


def _take_many(path: str, n: int, ready: Any, out: Any) -> None:  # in a spawned process
    buckets = SharedBuckets(Path(path), rate=0.001, burst=25)
    ready.wait(60)
    out.put(sum(1 for _ in range(n) if buckets.take("busy-app") == 0))


def test_processes_sharing_the_file_share_each_clients_bucket(tmp_path: Path) -> None:
    """Three processes take 40 tokens each, at once, from one client's bucket of 25: 25 in all
    (with a bucket per process it would be 75); another client's bucket is untouched."""
    path = str(tmp_path / "rate")
    ctx = multiprocessing.get_context("spawn")
    ready, out = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_take_many, args=(path, 40, ready, out)) for _ in range(3)]
    for p in procs:
        p.start()
    counts = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert sum(counts) == 25
    here = SharedBuckets(Path(path), rate=0.001, burst=25)
    assert here.take("busy-app") > 0
    assert here.take("other-app") == 0


def test_shared_buckets_refill_and_reuse_slots_of_idle_clients(tmp_path: Path) -> None:
    buckets = SharedBuckets(tmp_path / "rate", rate=2, burst=3)
    assert [buckets.take("app", 100.0) for _ in range(3)] == [0, 0, 0]
    assert buckets.take("app", 100.0) == 0.5
    assert buckets.take("app", 100.6) == 0
    assert buckets.take("app", 100.6) == pytest.approx(0.4)  # 0.2 tokens left: 0.4 s to the next
    # far more clients than slots, each taking a token: every new one gets a full bucket, and
    # the throttled client keeps its slot (the fullest buckets are the ones given up)
    for n in range(3 * SharedBuckets.SLOTS):
        assert buckets.take(f"client-{n}", 100.65) == 0
    assert buckets.take("app", 100.7) == pytest.approx(0.3)  # 0.4 tokens: still counting
    # once refilled to the brim a slot is as good as empty, and is reused
    assert buckets.take("app", 200.0) == 0


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_workers_of_one_server_share_a_clients_rate(tmp_path: Path) -> None:
    """`carerecord serve --workers 2` over real HTTP: a client on fresh connections (which the
    kernel hands to either worker) gets its burst once, not once per worker."""
    port, db = _port(), f"sqlite:///{tmp_path / 'rate.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARERECORD_")}
    env.update(CARERECORD_RATE_PER_SECOND="0.001", CARERECORD_RATE_BURST="8",
               CARERECORD_DATA_DIR=str(tmp_path))
    server = subprocess.Popen([sys.executable, "-m", "carerecord.cli", "serve", "--workers", "2",
                               "--port", str(port), "--database", db], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/fhir/metadata", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        engine = make_engine(db)
        token = AccessTokens(engine, base, f"{base}/fhir").mint(
            "busy-app", "patient/*.cruds", Grantee("patient", "Patient/p1", patients=("p1",)), 300)[0]
        engine.dispose()

        def one(_: int) -> int:  # a new connection each time
            r = httpx.get(f"{base}/fhir/Patient/p1", headers={"Authorization": f"Bearer {token}"}, timeout=10)
            return r.status_code

        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(one, range(48)))
        assert codes.count(404) == 8, codes  # the burst, across both workers
        assert codes.count(429) == 40, codes
    finally:
        server.terminate()
        server.wait(30)
    assert server.returncode == 0, server.stderr.read() if server.stderr else ""
    assert not list(Path("/dev/shm").glob(f"carerecord-rate-{server.pid}-*"))  # removed on the way out
