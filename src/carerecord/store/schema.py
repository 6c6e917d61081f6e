"""Tables of the record store (SQLAlchemy Core), identical on SQLite and PostgreSQL.

* ``resources``: one row per logical resource (type, id): its current version, whether it is
  deleted, and the Patient whose compartment it is first in. ``rid`` is a surrogate key that
  every other table uses, so index rows stay small.
* ``resource_versions``: every version ever written, with the exact JSON bytes served to
  clients (reads never re-serialise). On PostgreSQL a JSONB copy of each current resource is
  kept in ``resources.doc`` for SQL analytics (JSONB reorders keys, so it is not what we serve).
* ``compartments``: (rid, patient id) for every Patient compartment a resource is in; access
  control and ``$everything`` key on it.
* ``idx_*``: search index rows of the current version of each resource, keyed by ``rid`` and a
  64-bit ``pkey`` naming (resource type, search parameter code) - see :func:`param_key`;
  ``idx_content`` holds the words ``_content`` searches.

Times are integers: microseconds since 1970-01-01T00:00Z (UTC).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

# SQLite only gives a rowid alias to "INTEGER PRIMARY KEY"; BigInteger would not be one.
RID = BigInteger().with_variant(Integer(), "sqlite")
# Byte-order comparison on PostgreSQL, as SQLite does, so prefix searches are index range scans
# (value >= 'smi' AND value < 'smi\U0010ffff') whatever the database's locale.
KEY_TEXT = Text().with_variant(Text(collation="C"), "postgresql")

resources = Table(
    "resources", metadata,
    Column("rid", RID, primary_key=True, autoincrement=True),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("last_updated", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("patient_id", String(64), nullable=True),
    Column("doc", JSONB().with_variant(Text(), "sqlite"), nullable=True),  # PostgreSQL only
    Index("ux_resources_type_id", "res_type", "res_id", unique=True),
    Index("ix_resources_type_updated", "res_type", "last_updated"),
)

resource_versions = Table(
    "resource_versions", metadata,
    Column("rid", RID, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("res_type", String(64), nullable=False),
    Column("last_updated", BigInteger, nullable=False),
    Column("method", String(8), nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("content", LargeBinary, nullable=True),
    Index("ix_versions_type_updated", "res_type", "last_updated"),
    Index("ix_versions_updated", "last_updated"),
)

compartments = Table(
    "compartments", metadata,
    Column("rid", RID, nullable=False),
    Column("patient_id", String(64), nullable=False),
    Index("ix_compartments_patient", "patient_id", "rid"),
    Index("ix_compartments_rid", "rid"),
)

idx_string = Table(
    "idx_string", metadata,
    Column("rid", RID, nullable=False),
    Column("pkey", BigInteger, nullable=False),
    Column("value", KEY_TEXT, nullable=False),
    Column("exact", KEY_TEXT, nullable=False),
    Index("ix_string_value", "pkey", "value", "rid"),
    Index("ix_string_rid", "rid", "pkey"),
)

idx_token = Table(
    "idx_token", metadata,
    Column("rid", RID, nullable=False),
    Column("pkey", BigInteger, nullable=False),
    Column("system", KEY_TEXT, nullable=True),
    Column("code", KEY_TEXT, nullable=True),
    Column("text", KEY_TEXT, nullable=True),
    Index("ix_token_code", "pkey", "code", "system", "rid"),
    Index("ix_token_rid", "rid", "pkey"),
)

idx_date = Table(
    "idx_date", metadata,
    Column("rid", RID, nullable=False),
    Column("pkey", BigInteger, nullable=False),
    Column("low", BigInteger, nullable=False),
    Column("high", BigInteger, nullable=False),
    Index("ix_date_range", "pkey", "low", "high", "rid"),
    Index("ix_date_rid", "rid", "pkey"),
)

idx_number = Table(
    "idx_number", metadata,
    Column("rid", RID, nullable=False),
    Column("pkey", BigInteger, nullable=False),
    Column("value", Float, nullable=False),
    Column("low", Float, nullable=False),
    Column("high", Float, nullable=False),
    Index("ix_number_value", "pkey", "value", "rid"),
    Index("ix_number_rid", "rid", "pkey"),
)

idx_quantity = Table(
    "idx_quantity", metadata,
    Column("rid", RID, nullable=False),
    Column("pkey", BigInteger, nullable=False),
    Column("system", KEY_TEXT, nullable=True),
    Column("code", KEY_TEXT, nullable=True),
    Column("value", Float, nullable=False),
    Column("low", Float, nullable=False),
    Column("high", Float, nullable=False),
    Index("ix_quantity_value", "pkey", "code", "value", "rid"),
    Index("ix_quantity_rid", "rid", "pkey"),
)

idx_reference = Table(
    "idx_reference", metadata,
    Column("rid", RID, nullable=False),
    Column("pkey", BigInteger, nullable=False),
    Column("ref_type", String(64), nullable=True),
    Column("ref_id", String(64), nullable=True),
    Column("url", KEY_TEXT, nullable=True),
    Index("ix_reference_target", "pkey", "ref_id", "ref_type", "rid"),
    Index("ix_reference_reverse", "ref_type", "ref_id"),
    Index("ix_reference_rid", "rid", "pkey"),
)

idx_uri = Table(
    "idx_uri", metadata,
    Column("rid", RID, nullable=False),
    Column("pkey", BigInteger, nullable=False),
    Column("value", KEY_TEXT, nullable=False),
    Index("ix_uri_value", "pkey", "value", "rid"),
    Index("ix_uri_rid", "rid", "pkey"),
)

# Composite parameters (search.html#composite): every R4 composite starts with a token (or a
# reference) and has one or two further components. Component 1 goes to a_system/a_code
# (reference: type/id), component 2 to b_* (token/reference/string in b_system/b_code;
# quantity, number and date ranges in b_low/b_high with quantity units in b_system/b_code),
# component 3 (number) to c_low/c_high. Dates are microseconds, exact in a double.
idx_composite = Table(
    "idx_composite", metadata,
    Column("rid", RID, nullable=False),
    Column("pkey", BigInteger, nullable=False),
    Column("a_system", KEY_TEXT, nullable=True),
    Column("a_code", KEY_TEXT, nullable=True),
    Column("b_system", KEY_TEXT, nullable=True),
    Column("b_code", KEY_TEXT, nullable=True),
    Column("b_low", Float, nullable=True),
    Column("b_high", Float, nullable=True),
    Column("c_low", Float, nullable=True),
    Column("c_high", Float, nullable=True),
    Index("ix_composite_a", "pkey", "a_code", "a_system", "rid"),
    Index("ix_composite_rid", "rid", "pkey"),
)

# _content (fhir/text.py, store/content.py): one row per resource, its words as one text of
# tokens "<type tag>_<word>", full-text indexed by the database: an FTS5 table on SQLite
# (written beside each row by the repository, removed by a delete trigger), a GIN index on
# PostgreSQL (migration 0009). A row per word cost several times as much to write (Synthea
# load: 42 us a resource against 7).
idx_content = Table(
    "idx_content", metadata,
    Column("rid", RID, primary_key=True, autoincrement=False),
    Column("words", Text, nullable=False),
)

# Contained resources (http://hl7.org/fhir/R4/references.html#contained), searched with
# _contained (store/contained.py). Each gets a negative surrogate rid derived from its
# container's (contained_rid), so its index rows go in the same idx_* tables without ever
# meeting a resource's, under keys of their own (contained_key): no ordinary search can see
# them, and the ordinary plans and counts are unchanged.
contained = Table(
    "contained", metadata,
    Column("rid", RID, primary_key=True, autoincrement=False),  # contained_rid(container, i)
    Column("container", RID, nullable=False),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Index("ix_contained_container", "container"),
    Index("ix_contained_type", "res_type", "rid"),
)
CONTAINED_SLOTS = 1 << 16  # contained resources per container (rids stay under 2**47)

INDEX_TABLES = {
    "string": idx_string, "token": idx_token, "date": idx_date, "number": idx_number,
    "quantity": idx_quantity, "reference": idx_reference, "uri": idx_uri,
    "composite": idx_composite, "content": idx_content,
}


@lru_cache(maxsize=8192)
def param_key(resource_type: str, code: str) -> int:
    """A stable signed 63-bit key for (resource type, search parameter code).

    Stable across processes and databases (blake2b, not Python's salted hash), so index rows
    written by one server are found by another."""
    digest = hashlib.blake2b(f"{resource_type}.{code}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def contained_key(resource_type: str, code: str) -> int:
    """The key of parameter ``code`` on resources of ``resource_type`` that are contained in
    another: distinct from :func:`param_key` (no row of a contained resource is ever found by
    an ordinary search)."""
    return param_key("#" + resource_type, code)


def contained_rid(container: int, position: int) -> int:
    """The surrogate rid of the contained resource at ``position`` in resource ``container``:
    negative, so never a resource's, and in a range per container (see :func:`container_of`)."""
    return -(container * CONTAINED_SLOTS + position)


def container_of(rid: int) -> tuple[int, int]:
    """(container rid, position) of a contained resource's surrogate rid."""
    return divmod(-rid, CONTAINED_SLOTS)
