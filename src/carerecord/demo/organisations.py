"""The shared part of the demo community: organisations, their sites and their staff.

The community is cut into areas of ``PEOPLE_PER_AREA`` people. Each area has a GP practice, a
community pharmacy and a home-care agency; each block of ``PEOPLE_PER_CARE_HOME`` people has a care
home; one hospital trust (wards, emergency department, hospital pharmacy) and one ambulance trust
serve everyone. A person's area and care home follow from their index alone, and every site's
content from (site, seed) alone, so person N and the sites they use are the same whatever the
total number of people (see :func:`sites_for`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from random import Random
from typing import Any

from carerecord.demo import names

PEOPLE_PER_AREA = 10_000  # about one GP practice list (NHS England average is near 10,000)
PEOPLE_PER_CARE_HOME = 1_000  # ~8% in care: a home of about 80 residents per thousand people
CARE_HOMES_PER_AREA = PEOPLE_PER_AREA // PEOPLE_PER_CARE_HOME

HOSPITAL_TRUST = "demo-org-hospital"
HOSPITAL_PHARMACY = "demo-org-hospital-pharmacy"
HOSPITAL_SITE = "demo-loc-hospital"
EMERGENCY_DEPARTMENT = "demo-loc-hospital-ed"
HOSPITAL_PHARMACY_LOCATION = "demo-loc-hospital-pharmacy"
AMBULANCE_TRUST = "demo-org-ambulance"

# (key, ward name); each ward has a consultant, a sister and two staff nurses.
WARDS: tuple[tuple[str, str], ...] = (
    ("amu", "Ward 1 - Acute Medical Unit"),
    ("elderly", "Ward 12 - Care of the Elderly"),
    ("respiratory", "Ward 7 - Respiratory Medicine"),
    ("cardiology", "Ward 9 - Cardiology"),
    ("orthopaedics", "Ward 20 - Trauma and Orthopaedics"),
)
WARD_STAFF = (("consultant", "gmc"), ("ward_sister", "nmc"), ("staff_nurse", "nmc"),
              ("staff_nurse", "nmc"))
PRACTICE_STAFF = (("gp", "gmc"), ("gp", "gmc"), ("gp", "gmc"), ("gp", "gmc"),
                  ("practice_nurse", "nmc"), ("practice_nurse", "nmc"), ("hca", None),
                  ("pharmacist", "gphc"), ("receptionist", None))
PHARMACY_STAFF = (("pharmacist", "gphc"), ("pharmacist", "gphc"))
HOSPITAL_PHARMACY_STAFF = (("pharmacist", "gphc"), ("pharmacist", "gphc"))
AMBULANCE_STAFF = (("paramedic", "hcpc"),) * 4
CARE_HOME_STAFF = (("care_home_manager", "nmc"), ("staff_nurse", "nmc"), ("care_worker", None),
                   ("care_worker", None), ("care_worker", None))
HOME_CARE_STAFF = (("home_care_organiser", None), ("home_carer", None), ("home_carer", None),
                   ("home_carer", None))

PRACTICE_NAMES = ("The Grange Medical Practice", "Kirkgate Surgery", "Moorside Health Centre",
                  "Beech Tree Surgery", "Canal Side Medical Centre")
CARE_HOME_NAMES = ("Beechwood House", "Meadowbank Care Home", "Holly Lodge", "Aire View Nursing Home",
                   "The Laurels", "Rosemount House", "Calder Court", "Ashgrove Care Home",
                   "Moorland View", "St Margaret's Nursing Home")


@dataclass(frozen=True, slots=True)
class Staff:
    """One staff member: Practitioner and PractitionerRole ids, job role key, registration."""

    practitioner: str
    role: str
    job: str  # key of codes.JOB_ROLES; hospital ward staff are "ward:job"
    registration: str | None  # gmc, nmc, gphc, hcpc or None
    serial: int  # unique over the whole community; seeds registration numbers


@dataclass(frozen=True, slots=True)
class Site:
    """An organisation with its main location and staff; everything a person's record points at."""

    key: str
    organization: str
    location: str | None
    staff: tuple[Staff, ...]
    address: dict[str, Any]

    def members(self, job: str) -> tuple[Staff, ...]:
        """The staff with this job role key, in a fixed order."""
        return tuple(s for s in self.staff if s.job == job)


def area_of(index: int) -> int:
    return index // PEOPLE_PER_AREA


def care_home_of(index: int) -> int:
    return index // PEOPLE_PER_CARE_HOME


def site_number(key: str) -> int:
    """A small number unique to each site, laid out area by area."""
    if key in ("hospital", "ambulance"):
        return 0 if key == "hospital" else 1
    for prefix, base in (("gp", 2), ("pharmacy", 3), ("homecare", 4)):
        if key.startswith(prefix):
            return base + (CARE_HOMES_PER_AREA + 3) * int(key[len(prefix):])
    home = int(key.removeprefix("carehome"))
    return 5 + (CARE_HOMES_PER_AREA + 3) * (home // CARE_HOMES_PER_AREA) + home % CARE_HOMES_PER_AREA


def _staff(key: str, slots: tuple[tuple[str, str | None], ...], offset: int = 0,
           job_prefix: str = "") -> tuple[Staff, ...]:
    base = site_number(key) * 64
    return tuple(Staff(f"demo-staff-{key}-{offset + n}", f"demo-role-{key}-{offset + n}",
                       job_prefix + job, reg, base + offset + n)
                 for n, (job, reg) in enumerate(slots))


def _site_rng(seed: int, key: str) -> Random:
    return Random(f"carerecord-demo:{seed}:{key}")


@cache
def practice(area: int, seed: int) -> Site:
    key = f"gp{area}"
    return Site(key, f"demo-org-{key}", f"demo-loc-{key}", _staff(key, PRACTICE_STAFF),
                names.address(_site_rng(seed, key), names.TOWNS[area % len(names.TOWNS)], "work"))


@cache
def pharmacy(area: int, seed: int) -> Site:
    key = f"pharmacy{area}"
    return Site(key, f"demo-org-{key}", f"demo-loc-{key}", _staff(key, PHARMACY_STAFF),
                names.address(_site_rng(seed, key), names.TOWNS[area % len(names.TOWNS)], "work"))


@cache
def home_care(area: int, seed: int) -> Site:
    key = f"homecare{area}"
    return Site(key, f"demo-org-{key}", None, _staff(key, HOME_CARE_STAFF),
                names.address(_site_rng(seed, key), names.TOWNS[area % len(names.TOWNS)], "work"))


@cache
def care_home(home: int, seed: int) -> Site:
    key = f"carehome{home}"
    town = names.TOWNS[home // CARE_HOMES_PER_AREA % len(names.TOWNS)]
    rng = _site_rng(seed, key)
    addr = names.address(rng, town, "work", house=CARE_HOME_NAMES[home % len(CARE_HOME_NAMES)])
    return Site(key, f"demo-org-{key}", f"demo-loc-{key}", _staff(key, CARE_HOME_STAFF), addr)


@cache
def hospital(seed: int) -> Site:
    staff: list[Staff] = []
    for w, (ward, _name) in enumerate(WARDS):
        staff += _staff("hospital", WARD_STAFF, offset=w * len(WARD_STAFF), job_prefix=f"{ward}:")
    staff += _staff("hospital", HOSPITAL_PHARMACY_STAFF, offset=len(staff))
    addr = names.address(_site_rng(seed, "hospital"), names.TOWNS[0], "work", house="General Infirmary")
    return Site("hospital", HOSPITAL_TRUST, HOSPITAL_SITE, tuple(staff), addr)


@cache
def ambulance(seed: int) -> Site:
    return Site("ambulance", AMBULANCE_TRUST, None, _staff("ambulance", AMBULANCE_STAFF),
                names.address(_site_rng(seed, "ambulance"), names.TOWNS[0], "work"))


def ward_location(ward: str) -> str:
    return f"demo-loc-ward-{ward}"


def sites_for(people: int, seed: int) -> list[Site]:
    """Every site that ``people`` people (indices 0..people-1) can refer to, in output order."""
    areas = max(1, -(-people // PEOPLE_PER_AREA))
    homes = max(1, -(-people // PEOPLE_PER_CARE_HOME))
    out = [hospital(seed), ambulance(seed)]
    for a in range(areas):
        out += [practice(a, seed), pharmacy(a, seed), home_care(a, seed)]
    out += [care_home(h, seed) for h in range(homes)]
    return out
