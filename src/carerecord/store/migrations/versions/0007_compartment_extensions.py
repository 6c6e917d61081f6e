"""Compartment rows for the types carerecord.fhir.model.COMPARTMENT_EXTENSIONS adds to the
Patient compartment (Task, Device, GuidanceResponse, Contract, Linkage, VerificationResult).
Stored before, they had none, so searches treated them as reference data any signed-in caller
could read (issue 4). Their current versions are read and their rows written again; a
database without such resources does nothing.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 09:00:00
"""
import orjson
import sqlalchemy as sa
from alembic import op

from carerecord.fhir.indexing import patient_compartments
from carerecord.fhir.model import COMPARTMENT_EXTENSIONS

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

_BATCH = 1000


def upgrade() -> None:
    conn = op.get_bind()
    types = sorted(COMPARTMENT_EXTENSIONS)
    last = 0
    while True:
        rows = conn.execute(sa.text(
            "SELECT r.rid, v.content FROM resources r JOIN resource_versions v "
            "ON v.rid = r.rid AND v.version = r.version "
            "WHERE r.deleted = :no AND r.rid > :last AND r.res_type IN :types ORDER BY r.rid LIMIT :n"
        ).bindparams(sa.bindparam("types", expanding=True)),
            {"no": False, "last": last, "types": types, "n": _BATCH}).all()
        if not rows:
            return
        rids = [rid for rid, _ in rows]
        conn.execute(sa.text("DELETE FROM compartments WHERE rid IN :rids")
                     .bindparams(sa.bindparam("rids", expanding=True)), {"rids": rids})
        found = [(rid, patient_compartments(orjson.loads(content))) for rid, content in rows if content is not None]
        pairs = [{"rid": rid, "pid": pid} for rid, pids in found for pid in pids]
        if pairs:
            conn.execute(sa.text("INSERT INTO compartments (rid, patient_id) VALUES (:rid, :pid)"), pairs)
        for rid, pids in found:
            conn.execute(sa.text("UPDATE resources SET patient_id = :pid WHERE rid = :rid"),
                         {"pid": pids[0] if pids else None, "rid": rid})
        last = rids[-1]


def downgrade() -> None:
    pass  # the rows are right for the older code too: it never reads them for these types
