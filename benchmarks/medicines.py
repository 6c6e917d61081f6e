"""Medicines safety check latency (issue 5): checking one order for a patient on 20 medicines
with 5 allergies, in-process and over HTTP as a CDS Hooks ``order-sign`` call with prefetch.

    .venv/bin/python -m benchmarks.medicines [--iterations 5000] [--requests 2000]

Targets: p99 <= 5 ms in-process, p99 <= 20 ms over HTTP. Prints a table; the HTTP figures
come from a ``carerecord serve`` child process (one worker, SQLite) on 127.0.0.1, called by
one keep-alive client, one request at a time."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import httpx

from benchmarks.server import Server
from carerecord.services.medicines.bundled import bundled
from carerecord.services.medicines.cds import CdsService
from carerecord.services.medicines.checker import check_order
from carerecord.services.medicines.order import order_from
from carerecord.services.medicines.patient import build_context
from carerecord.services.medicines.resolve import Resolver

CURRENT = ["Ramipril 5mg capsules", "Amlodipine 10mg tablets", "Atorvastatin 40mg tablets", "Aspirin 75mg tablets",
           "Metformin 500mg tablets", "Gliclazide 80mg tablets", "Omeprazole 20mg capsules", "Bisoprolol 5mg tablets",
           "Furosemide 40mg tablets", "Levothyroxine 100microgram tablets", "Sertraline 50mg tablets",
           "Paracetamol 500mg tablets", "Salbutamol 100micrograms/dose inhaler", "Tiotropium 18microgram capsules",
           "Allopurinol 100mg tablets", "Colecalciferol 800unit capsules", "Finasteride 5mg tablets",
           "Tamsulosin 400microgram capsules", "Gabapentin 300mg capsules", "Warfarin 1mg tablets"]
ALLERGIES = ["Penicillin", "Sulfonamides", "Codeine", "Latex", "Ibuprofen"]
ORDER_TEXT = "Clarithromycin 500mg tablets"


def _dose(n: float, per_day: int) -> dict[str, Any]:
    return {"timing": {"repeat": {"frequency": per_day, "period": 1, "periodUnit": "d"}}, "route": {"text": "Oral"},
            "doseAndRate": [{"doseQuantity": {"value": n, "unit": "tablet"}}]}


def patient_records() -> dict[str, Any]:
    """The prefetch of the benchmark patient: 20 active medicines, 5 allergies, an eGFR."""
    meds = [{"resourceType": "MedicationRequest", "id": f"m{n}", "status": "active", "intent": "order",
             "subject": {"reference": "Patient/p1"}, "medicationCodeableConcept": {"text": text},
             "dosageInstruction": [_dose(1, 1)]} for n, text in enumerate(CURRENT)]
    allergies = [{"resourceType": "AllergyIntolerance", "id": f"a{n}", "patient": {"reference": "Patient/p1"},
                  "criticality": "high", "code": {"text": text}} for n, text in enumerate(ALLERGIES)]
    egfr = {"resourceType": "Observation", "id": "e1", "status": "final", "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "62238-1"}]},
            "effectiveDateTime": "2026-10-01", "valueQuantity": {"value": 52}}

    def bundle(items: list[dict[str, Any]]) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in items]}
    return {"patient": {"resourceType": "Patient", "id": "p1", "birthDate": "1948-03-04"},
            "allergies": bundle(allergies), "medications": bundle(meds), "statements": None, "egfr": bundle([egfr])}


def hook_request() -> dict[str, Any]:
    order = {"resourceType": "MedicationRequest", "id": "new", "status": "draft", "intent": "order",
             "subject": {"reference": "Patient/p1"}, "medicationCodeableConcept": {"text": ORDER_TEXT},
             "dosageInstruction": [_dose(1, 2)]}
    return {"hook": "order-sign", "hookInstance": "bench", "prefetch": patient_records(),
            "context": {"userId": "Practitioner/1", "patientId": "p1",
                        "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": order}]}}}


def _timed(fn: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def _pcts(ms: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else ms * 99
    return q[49], q[98]


def in_process(iterations: int) -> dict[str, list[float]]:
    kb = bundled()
    resolver = Resolver(kb)
    request = hook_request()
    pre = request["prefetch"]
    service = CdsService(kb, resolver, today=lambda: date(2026, 11, 23))
    entries = [e["resource"] for e in pre["medications"]["entry"]]
    allergies = [e["resource"] for e in pre["allergies"]["entry"]]
    ctx = build_context(pre["patient"], "p1", allergies, entries, [pre["egfr"]["entry"][0]["resource"]], resolver,
                        date(2026, 11, 23))
    order = order_from(request["context"]["draftOrders"]["entry"][0]["resource"], resolver)
    findings = check_order(order, ctx, kb, resolver, [order])
    assert findings, "the benchmark order should raise findings"
    return {"check_order (context built)": _timed(lambda: check_order(order, ctx, kb, resolver, [order]), iterations),
            "CDS call in-process (prefetch parsed each time)": _timed(
                lambda: service.call("carerecord-medicines-sign", request), iterations)}


def over_http(requests: int, workdir: Path) -> list[float]:
    from carerecord.access.tokens import mint_system_token
    from carerecord.store.engine import make_engine

    database = f"sqlite:///{workdir / 'bench.db'}"
    with Server(database, 1, workdir) as server:
        engine = make_engine(database)
        token = mint_system_token(engine, audience=f"{server.base}/fhir", client_id="benchmarks.medicines")
        engine.dispose()
        body = hook_request()
        with httpx.Client(base_url=server.base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:
            def call() -> None:
                r = c.post("/cds-services/carerecord-medicines-sign", json=body)
                assert r.status_code == 200 and r.json()["cards"], r.text
            _timed(call, min(50, requests))  # warm up
            return _timed(call, requests)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5000, help="in-process checks to time")
    parser.add_argument("--requests", type=int, default=2000, help="CDS Hooks HTTP calls to time")
    args = parser.parse_args(argv)
    rows = [(label, *_pcts(ms), "5") for label, ms in in_process(args.iterations).items()]
    with tempfile.TemporaryDirectory(prefix="carerecord-medicines-") as tmp:
        rows.append(("CDS Hooks order-sign over HTTP", *_pcts(over_http(args.requests, Path(tmp))), "20"))
    print(f"{'metric (20 medicines, 5 allergies, 1 order)':<52} {'p50 ms':>8} {'p99 ms':>8} {'target p99':>11}")
    print("-" * 82)
    for label, p50, p99, target in rows:
        print(f"{label:<52} {p50:>8.3f} {p99:>8.3f} {'<= ' + target:>11}")


if __name__ == "__main__":
    main()
