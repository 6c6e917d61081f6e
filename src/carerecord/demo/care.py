"""Social care and advance decisions: EpisodeOfCare, CareTeam and the DNACPR Flag.

A care-home resident has an EpisodeOfCare managed by the care home and a CareTeam of the home's
manager, nurse and a care worker plus their GP; a person with a home-care package has the same
with the home-care agency's organiser and carers. A DNACPR decision is a Flag (category
"advance-directive", SNOMED 450476008): it is a clinical decision that ambulance crews and the
emergency view must see at once, not the person's own consent, so it is not a Consent.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from carerecord.demo import codes
from carerecord.demo.clinical import concept, quantity
from carerecord.demo.organisations import Site, Staff
from carerecord.demo.record import Record, ref, stamp


def _member(staff: Staff, organization: str) -> dict[str, Any]:
    job = staff.job.rpartition(":")[2]
    return {"role": [codes.JOB_ROLES[job].concept()], "member": ref("Practitioner", staff.practitioner),
            "onBehalfOf": ref("Organization", organization)}


def care_package(rec: Record, provider: Site, team: list[Staff], lead: Staff, since: date,
                 kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """An EpisodeOfCare with ``provider`` and the CareTeam that delivers it; ``kind`` names it
    ("Residential care", "Home care")."""
    p = rec.person
    team_id = rec.new_id("careteam")
    episode_id = rec.new_id("episode")
    members = [_member(s, provider.organization) for s in team]
    members.append(_member(p.usual_gp, p.practice.organization))
    care_team = {"resourceType": "CareTeam", "id": team_id, "status": "active",
                 "name": f"{kind} team - {provider.address['line'][0]}",
                 "subject": rec.subject(), "period": {"start": since.isoformat()},
                 "participant": members, "managingOrganization": [ref("Organization", provider.organization)]}
    episode = {"resourceType": "EpisodeOfCare", "id": episode_id, "status": "active",
               "type": [{"text": kind}], "patient": rec.subject(),
               "managingOrganization": ref("Organization", provider.organization),
               "period": {"start": since.isoformat()}, "careManager": ref("Practitioner", lead.practitioner),
               "team": [ref("CareTeam", team_id)]}
    rec.add(episode)
    rec.add(care_team)
    return episode, care_team


def residential_care(rec: Record) -> None:
    """The care-home resident's EpisodeOfCare and CareTeam, and the home's monthly weights."""
    p = rec.person
    home = p.care_home
    if home is None:
        return
    since = max(p.today - timedelta(days=p.rng.randint(30, 6 * 365)), p.birth)
    manager = home.members("care_home_manager")[0]
    team = [manager, *home.members("staff_nurse"), p.rng.choice(home.members("care_worker"))]
    care_package(rec, home, team, manager, since, "Residential care")
    _monthly_weights(rec, home, max(since, p.today - timedelta(days=365)))


def _monthly_weights(rec: Record, home: Site, start: date) -> None:
    """A resident's weight each month since ``start``, taken by the home's care workers: homes
    weigh residents monthly to screen for malnutrition (MUST; NICE CG32 1.2 and QS24 statement 1
    ask for screening on admission and when there is concern), and weight loss is what they look for.
    No Encounter: it is part of daily life in the home, not a visit."""
    p = rec.person
    health = rec.health
    assert health is not None
    carers = home.members("care_worker")
    weight = health.bmi * (health.height / 100) ** 2
    losing = p.rng.random() < 0.25  # a quarter lose weight through the year
    day = start + timedelta(days=p.rng.randint(0, 27))
    while day < p.today:
        weight += p.rng.gauss(-0.4 if losing else 0.0, 0.5)
        when = stamp(day, 7 * 60 + 30 + 5 * p.rng.randrange(0, 24))
        rec.add({"resourceType": "Observation", "id": rec.new_id("obs"), "status": "final",
                 "category": [codes.OBS_CAT_VITAL.concept()], "code": concept(codes.OBS_WEIGHT),
                 "subject": rec.subject(), "effectiveDateTime": when,
                 "performer": [ref("Practitioner", p.rng.choice(carers).practitioner)],
                 "valueQuantity": quantity(round(max(weight, 30.0), 1), "kg")})
        day += timedelta(days=28 + p.rng.randint(0, 6))


def home_care(rec: Record) -> Staff | None:
    """The home-care package (if any); returns the person's main carer."""
    p = rec.person
    agency = p.home_care
    if agency is None:
        return None
    since = p.today - timedelta(days=p.rng.randint(14, 3 * 365))
    organiser = agency.members("home_care_organiser")[0]
    carers = list(agency.members("home_carer"))
    p.rng.shuffle(carers)
    care_package(rec, agency, [organiser, *carers[:2]], organiser, since, "Home care")
    return carers[0]


def dnacpr(rec: Record) -> dict[str, Any] | None:
    """A DNACPR Flag for people with a recorded decision, authored by their usual GP."""
    p = rec.person
    if not p.dnacpr:
        return None
    since = max(p.today - timedelta(days=p.rng.randint(7, 3 * 365)), p.birth)
    return rec.add({"resourceType": "Flag", "id": rec.new_id("flag"), "status": "active",
                    "category": [codes.FLAG_ADVANCE_DIRECTIVE.concept()],
                    "code": codes.DNACPR.concept("DNACPR decision in place (do not attempt CPR)"),
                    "subject": rec.subject(), "period": {"start": since.isoformat()},
                    "author": ref("Practitioner", p.usual_gp.practitioner)})
