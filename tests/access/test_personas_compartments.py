"""Persona tests of resources R4 leaves out of the Patient compartment but which are about one
patient (a pharmacy Task naming the patient and their medicine, an implanted Device): they are
that patient's record, not reference data anyone signed in could read (issue 4). Over real
HTTP against the demo community; the migration that moves older ones in is tested too."""

from __future__ import annotations

import importlib.util
from typing import Any

import httpx
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import Engine, text

from carerecord.store.engine import MIGRATIONS
from tests.access.personas import PATIENT, RECEPTIONIST, entries, new_id, pid, put, refs, same_answer


def task(patient: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Task", "id": new_id("task"), "status": "requested", "intent": "order",
            "for": {"reference": f"Patient/{patient}"}, "description": "Dispense methadone 10mg/ml oral solution",
            **extra}


def test_another_patients_task_and_device_are_not_reference_data(demo: httpx.Client, as_: Any) -> None:
    h = as_(PATIENT)
    theirs = put(demo, task(pid(2)))
    implant = put(demo, {"resourceType": "Device", "id": new_id("device"), "patient": {"reference": f"Patient/{pid(2)}"},
                         "deviceName": [{"name": "Cardiac pacemaker", "type": "user-friendly-name"}]})
    same_answer(demo.get(f"/Task/{theirs['id']}", headers=h), demo.get("/Task/no-such-task", headers=h),
                theirs["id"], "no-such-task")
    assert demo.get(f"/Device/{implant['id']}", headers=h).status_code == 404
    assert entries(demo.get("/Task", params={"patient": pid(2)}, headers=h)) == []
    assert entries(demo.get("/Device", headers=h)) == []
    assert refs(entries(demo.get("/Task", params={"patient": pid(2)}))) >= {f"Task/{theirs['id']}"}
    # a receptionist's role does not read the clinical record: Tasks included now
    assert demo.get(f"/Task/{theirs['id']}", headers=as_(RECEPTIONIST)).status_code == 403


def test_a_patients_own_task_is_in_their_record(demo: httpx.Client, as_: Any) -> None:
    h = as_(PATIENT)
    mine = put(demo, task(pid(0), requester={"reference": f"Patient/{pid(0)}"}))
    assert demo.get(f"/Task/{mine['id']}", headers=h).status_code == 200
    assert f"Task/{mine['id']}" in refs(entries(demo.get(f"/Patient/{pid(0)}/Task", headers=h)))
    everything = demo.get(f"/Patient/{pid(0)}/$everything", params={"_type": "Task", "_count": "1000"}, headers=h)
    assert f"Task/{mine['id']}" in refs(entries(everything))


def test_tasks_stored_before_are_moved_into_the_compartment_by_the_migration(
        demo: httpx.Client, as_: Any, engine: Engine) -> None:
    theirs = put(demo, task(pid(2)))
    with engine.begin() as conn:  # as the older code stored it: no compartment rows
        rid = conn.execute(text("SELECT rid FROM resources WHERE res_type = 'Task' AND res_id = :i"),
                           {"i": theirs["id"]}).scalar_one()
        conn.execute(text("DELETE FROM compartments WHERE rid = :rid"), {"rid": rid})
    h = as_(PATIENT)
    assert f"Task/{theirs['id']}" in refs(entries(demo.get("/Task", params={"_id": theirs["id"]}, headers=h)))
    spec = importlib.util.spec_from_file_location("migration_0007", MIGRATIONS / "versions" / "0007_compartment_extensions.py")
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    with engine.begin() as conn, Operations.context(MigrationContext.configure(conn)):
        migration.upgrade()
    assert entries(demo.get("/Task", params={"_id": theirs["id"]}, headers=h)) == []
    assert refs(entries(demo.get(f"/Patient/{pid(2)}/Task"))) >= {f"Task/{theirs['id']}"}
