"""The audit trail's hash chain: what makes it tamper-evident.

Each row of the audit table carries the hash of the previous row's hash and its own content,
the first row chaining from :data:`GENESIS`. Rows are written with the second form of the link
(``"v2:" + hex SHA-256(previous hash + ":" + seq + ":" + body)``, :func:`link_v2`), where the
body is the row's time, patient, agent, outcome, action and record as a compact JSON array
(:func:`body`): the sequence number stays outside the JSON so that PostgreSQL can number and
hash a batch itself, under the chain's lock, in the function that inserts it (``audit_append``,
migration 0012; audit_store.py), from bodies computed here. Rows of the first form (hex
SHA-256(previous hash + the JSON array with the sequence number inside), :func:`link`) are
still verified. So:

* an edited row no longer hashes to its stored hash;
* a deleted row breaks the link of the row after it (and leaves a gap in the sequence);
* an inserted row breaks its own link, or the next row's if its hash was forged to match.

Anyone able to rewrite the whole table from the first changed row onwards could forge a
consistent chain; that needs write access to the database itself, which no API or application
role has (docs/architecture.md, "Audit"). Pure: no I/O here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import orjson

GENESIS = "0" * 64
V2 = "v2:"


@dataclass(frozen=True, slots=True)
class ChainRow:
    """One audit row as stored: every column the hash covers, and the hash."""

    seq: int
    recorded_us: int
    patient: str | None
    agent: str
    outcome: str
    action: str
    content: str  # the AuditEvent, as canonical JSON text
    hash: str


def canonical(seq: int, recorded_us: int, patient: str | None, agent: str, outcome: str,
              action: str, content: str) -> bytes:
    """The bytes a row's hash covers: a JSON array of its columns in a fixed order (orjson
    output is deterministic for these types)."""
    return orjson.dumps([seq, recorded_us, patient, agent, outcome, action, content])


def link(previous: str, seq: int, recorded_us: int, patient: str | None, agent: str,
         outcome: str, action: str, content: str) -> str:
    """The hash of a row whose predecessor's hash is ``previous``."""
    digest = hashlib.sha256(previous.encode("ascii"))
    digest.update(canonical(seq, recorded_us, patient, agent, outcome, action, content))
    return digest.hexdigest()


def body(recorded_us: int, patient: str | None, agent: str, outcome: str, action: str,
         content: str) -> bytes:
    """What a row's second-form link covers besides the previous hash and its sequence number."""
    return orjson.dumps([recorded_us, patient, agent, outcome, action, content])


def link_v2(previous: str, seq: int, row_body: bytes) -> str:
    """The second-form hash of a row numbered ``seq`` whose predecessor's hash is ``previous``
    (the same bytes PostgreSQL hashes in ``audit_append``, migration 0012)."""
    digest = hashlib.sha256(f"{previous}:{seq}:".encode("ascii"))
    digest.update(row_body)
    return V2 + digest.hexdigest()


def row_hash(previous: str, row: ChainRow) -> str:
    """What ``row.hash`` must be, given the hash of the row before it."""
    if row.hash.startswith(V2):
        return link_v2(previous, row.seq, body(row.recorded_us, row.patient, row.agent, row.outcome,
                                               row.action, row.content))
    return link(previous, row.seq, row.recorded_us, row.patient, row.agent, row.outcome,
                row.action, row.content)


def first_break(rows: Iterable[ChainRow]) -> tuple[str | None, int]:
    """(a sentence describing the first broken link, or None; how many rows were checked).

    ``rows`` must come in ``seq`` order. A sequence gap is reported as a deleted row, a row
    whose hash does not follow from the row before as edited, inserted, or following a
    deleted one (the chain cannot tell which of these, only where)."""
    previous, expected_seq, n = GENESIS, None, 0
    for row in rows:
        n += 1
        if expected_seq is not None and row.seq != expected_seq:
            return (f"audit row {row.seq} follows row {expected_seq - 1}: "
                    f"{'row(s) deleted' if row.seq > expected_seq else 'rows out of order'} "
                    f"before audit row {row.seq}"), n
        if row_hash(previous, row) != row.hash:
            return (f"audit row {row.seq} does not follow from the row before it: it was edited, "
                    "inserted, or the row before it was deleted or edited"), n
        previous, expected_seq = row.hash, row.seq + 1
    return None, n
