"""Self-claimed relationships and emergency access (break-glass), time-limited and reviewed.

When no legitimate relationship exists (:mod:`carerecord.access.relationships`), a member of
staff may *claim* one (a patient who walked in; the record is needed for their care) or, with
the EMERGENCY_ACCESS activity, *break the glass*. Both need a reason from :data:`REASONS` plus
free text (an empty text is refused: a reason nobody can review is no reason), last
:data:`CLAIM_SECONDS` / :data:`BREAK_GLASS_SECONDS`, are stored in ``access_grants`` (migration
0006), listed in the privacy officer's queue (``GET /fhir/$access-queue``) until reviewed, and
named as the access basis in the patient's access log ("self-claimed", "break-glass:<reason>").

Each privacy officer's queue holds the items of their own organisation (:func:`in_scope`): made
by its staff, or about patients registered with it; a region's other organisations' are not
theirs to see or close. The privacy officer closes each item (:func:`review`, ``POST /fhir/$review-access``, the
REVIEW_ACCESS activity) with an outcome from :data:`OUTCOMES` and a note (required, as for the
claim itself), recorded with who reviewed it and when (migration 0008); an item is reviewed
once. An ``inappropriate`` outcome also ends the grant at once: access found unjustified does
not run on for the rest of its hours.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Connection,
    Engine,
    Index,
    Integer,
    Select,
    Table,
    Text,
    false,
    insert,
    or_,
    select,
    update,
)

from carerecord.access import relationships, tables
from carerecord.errors import Conflict, Invalid, NotFound
from carerecord.store.records import now_us

CLAIM_SECONDS = 24 * 3600  # a self-claim covers a working day's care
BREAK_GLASS_SECONDS = 4 * 3600  # an emergency lasts hours, then needs a new decision

SELF_CLAIM, BREAK_GLASS = "self-claimed", "break-glass"
# Reasons modelled on the NHS Spine "legitimate relationship" self-claim and emergency access reasons.
REASONS: dict[str, str] = {
    "emergency-care": "Emergency clinical care: the patient cannot consent",
    "unscheduled-care": "Unscheduled care: the patient has presented for care",
    "safeguarding": "A safeguarding concern for the patient or others",
    "public-interest": "Disclosure in the public interest or required by law",
    "direct-care-referral": "Direct care the patient has been referred for, not yet recorded",
}

APPROPRIATE, INAPPROPRIATE, ESCALATED = "appropriate", "inappropriate", "escalated"
OUTCOMES: dict[str, str] = {
    APPROPRIATE: "The access was justified",
    INAPPROPRIATE: "The access was not justified (the grant ends now)",
    ESCALATED: "Referred for investigation (e.g. to the Caldicott Guardian or HR)",
}

_BIG = BigInteger().with_variant(Integer(), "sqlite")
grants = Table(
    "access_grants", tables.metadata,
    Column("grant_id", Text, primary_key=True),
    Column("kind", Text, nullable=False),  # self-claimed | break-glass
    Column("subject", Text, nullable=False),  # Practitioner/x
    Column("practitioner_role", Text, nullable=False),
    Column("organization", Text),
    Column("patient_id", Text, nullable=False),
    Column("reason", Text, nullable=False),  # a key of REASONS
    Column("text", Text, nullable=False),
    Column("created_us", _BIG, nullable=False),
    Column("expires_us", _BIG, nullable=False),
    Column("reviewed", Boolean, nullable=False, default=False),
    Column("review_outcome", Text),  # a key of OUTCOMES (migration 0008)
    Column("review_note", Text),
    Column("reviewer", Text),  # Practitioner/x
    Column("reviewer_role", Text),  # PractitionerRole/x
    Column("reviewed_us", _BIG),
    Index("ix_access_grants_who", "practitioner_role", "patient_id", "expires_us"),
    Index("ix_access_grants_queue", "reviewed", "created_us"),
)


@dataclass(frozen=True, slots=True)
class AccessGrant:
    grant_id: str
    kind: str
    subject: str
    practitioner_role: str
    organization: str | None
    patient_id: str
    reason: str
    text: str
    created_us: int
    expires_us: int
    reviewed: bool
    review_outcome: str | None = None
    review_note: str | None = None
    reviewer: str | None = None
    reviewer_role: str | None = None
    reviewed_us: int | None = None

    def basis(self) -> str:
        """The access basis as the audit trail records it."""
        return SELF_CLAIM if self.kind == SELF_CLAIM else f"{BREAK_GLASS}:{self.reason}"


def check_reason(reason: str, text: str) -> None:
    """Invalid unless ``reason`` is one of :data:`REASONS` and ``text`` says something."""
    if reason not in REASONS:
        raise Invalid(f"reason must be one of {', '.join(sorted(REASONS))}", "reason")
    if not text.strip():
        raise Invalid("A reason needs free text saying why the record is needed", "text")


def record(engine: Engine, kind: str, subject: str, practitioner_role: str, organization: str | None,
           patient_id: str, reason: str, text: str) -> AccessGrant:
    """Store a self-claim or break-glass (after :func:`check_reason`) and return it."""
    check_reason(reason, text)
    now = now_us()
    seconds = CLAIM_SECONDS if kind == SELF_CLAIM else BREAK_GLASS_SECONDS
    grant = AccessGrant(uuid.uuid4().hex, kind, subject, practitioner_role, organization, patient_id, reason,
                        text.strip()[:2000], now, now + seconds * 1_000_000, False)
    with engine.begin() as conn:
        conn.execute(insert(grants).values(**{k: getattr(grant, k) for k in grants.c.keys()}))
    return grant


def active(conn: Connection, practitioner_role: str, patient_id: str) -> AccessGrant | None:
    """The newest unexpired grant of this role for this patient (break-glass before a claim)."""
    rows = conn.execute(select(grants).where(grants.c.practitioner_role == practitioner_role,
                                             grants.c.patient_id == patient_id,
                                             grants.c.expires_us > now_us())
                        .order_by(grants.c.created_us.desc())).all()
    found = [AccessGrant(**r._mapping) for r in rows]
    return next((g for g in found if g.kind == BREAK_GLASS), found[0] if found else None)


def granted_patients(practitioner_role: str) -> Select[tuple[str]]:
    """SELECT of the patients this role holds an unexpired grant for (for search restriction)."""
    return select(grants.c.patient_id).where(grants.c.practitioner_role == practitioner_role,
                                             grants.c.expires_us > now_us())


def in_scope(organization: str | None) -> ColumnElement[bool]:
    """The grants a privacy officer of ``organization`` looks after: those made by staff acting
    for it, and those about patients registered with it (one made by another organisation's
    paramedic on the practice's patient is the practice's to review as much as the trust's)."""
    if not organization:
        return false()
    return or_(grants.c.organization == organization,
               grants.c.patient_id.in_(relationships.registered_with(organization)))


def queue(engine: Engine, organization: str | None, limit: int = 200, *,
          reviewed: bool = False) -> list[AccessGrant]:
    """Unreviewed grants (or, with ``reviewed``, reviewed ones) in the scope of a privacy
    officer of ``organization`` (:func:`in_scope`), newest first: their queue."""
    order = grants.c.reviewed_us.desc() if reviewed else grants.c.created_us.desc()
    with engine.connect() as conn:
        rows = conn.execute(select(grants).where(grants.c.reviewed.is_(reviewed), in_scope(organization))
                            .order_by(order).limit(limit)).all()
    return [AccessGrant(**r._mapping) for r in rows]


def check_review(outcome: str, note: str) -> None:
    """Invalid unless ``outcome`` is one of :data:`OUTCOMES` and ``note`` says something."""
    if outcome not in OUTCOMES:
        raise Invalid(f"outcome must be one of {', '.join(sorted(OUTCOMES))}", "outcome")
    if not note.strip():
        raise Invalid("A review needs a note saying what was found", "note")


def review(engine: Engine, grant_id: str, outcome: str, note: str, reviewer: str,
           reviewer_role: str, organization: str | None) -> AccessGrant:
    """Close a queue item of a privacy officer of ``organization`` (after
    :func:`check_review`): NotFound for an unknown grant and, in the same words, for one
    outside their scope (:func:`in_scope`); Conflict for one already reviewed (a review is not
    rewritten; the first stands). An ``inappropriate`` outcome ends the grant now."""
    check_review(outcome, note)
    now = now_us()
    with engine.begin() as conn:
        row = conn.execute(select(grants).where(grants.c.grant_id == grant_id, in_scope(organization))).first()
        if row is None:
            raise NotFound(f"No self-claim or break-glass {grant_id!r} is known")
        found = AccessGrant(**row._mapping)
        values: dict[str, object] = {"reviewed": True, "review_outcome": outcome, "review_note": note.strip()[:2000],
                                     "reviewer": reviewer, "reviewer_role": reviewer_role, "reviewed_us": now}
        if outcome == INAPPROPRIATE:
            values["expires_us"] = min(found.expires_us, now)
        done = conn.execute(update(grants).where(grants.c.grant_id == grant_id, grants.c.reviewed.is_(False))
                            .values(**values))
        if done.rowcount != 1:
            raise Conflict(f"The {found.kind} {grant_id!r} has already been reviewed")
    return replace(found, **values)  # type: ignore[arg-type]
