"""Who each person is: age, sex, where they live, their long-term conditions and their care.

:func:`profile` draws a :class:`Person` from the person's own random stream, so person N is the
same whatever the total count. The numbers are rough English primary-care figures, skewed a
little older than the national list so a 200-person demo shows the conditions that matter most
to integrated care: about 8% live in a care home (age 75 and over, most with dementia) and about
7% live with dementia, concentrated at 80 and over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from random import Random
from typing import Any

from carerecord.demo import identifiers, names, organisations
from carerecord.demo.organisations import Site, Staff

CARE_HOME_SHARE = 0.08
CARE_HOME_DEMENTIA = 0.70
# (lowest age, highest age, weight) of people living in their own homes
AGE_BANDS = ((0, 17, 19), (18, 39, 25), (40, 64, 30), (65, 79, 17), (80, 99, 9))
# condition key -> (minimum age, probability by band: <40, 40-64, 65-79, 80+)
CHRONIC: dict[str, tuple[int, tuple[float, float, float, float]]] = {
    "hypertension": (30, (0.02, 0.20, 0.45, 0.60)),
    "diabetes_t2": (25, (0.01, 0.08, 0.15, 0.16)),
    "asthma": (3, (0.09, 0.07, 0.06, 0.05)),
    "copd": (40, (0.0, 0.02, 0.07, 0.09)),
    "af": (50, (0.0, 0.01, 0.06, 0.12)),
    "heart_failure": (50, (0.0, 0.01, 0.03, 0.08)),
    "ckd3": (40, (0.0, 0.03, 0.12, 0.25)),
    "depression": (16, (0.09, 0.11, 0.09, 0.10)),
    "oa_knee": (50, (0.0, 0.08, 0.18, 0.25)),
    "stroke": (55, (0.0, 0.01, 0.04, 0.07)),
    "history_mi": (45, (0.0, 0.02, 0.05, 0.07)),
    "atopic_dermatitis": (1, (0.06, 0.02, 0.01, 0.01)),
}


@dataclass(slots=True)
class Person:
    """The facts about one person that every part of their record is drawn from."""

    index: int
    seed: int
    rng: Random
    today: date
    female: bool
    birth: date
    age: int
    practice: Site
    usual_gp: Staff
    pharmacy: Site
    care_home: Site | None
    home_care: Site | None
    chronic: list[str] = field(default_factory=list)  # keys of codes.CONDITIONS
    dementia_code: str | None = None  # "dementia" or "alzheimers"
    dnacpr: bool = False

    @property
    def pid(self) -> str:
        return f"demo-patient-{self.index:06d}"

    def rid(self, kind: str, n: int = 0) -> str:
        """The id of this person's ``n``-th resource of ``kind`` (stable, unique per person)."""
        return f"demo-{self.index:06d}-{kind}-{n}"

    def band(self) -> int:
        """Age band used by the prevalence tables: 0 (<40), 1 (40-64), 2 (65-79), 3 (80+)."""
        return 0 if self.age < 40 else 1 if self.age < 65 else 2 if self.age < 80 else 3

    def days_ago(self, low: int, high: int) -> date:
        """A date between ``high`` and ``low`` days before today, never before birth."""
        d = self.today - timedelta(days=self.rng.randint(low, high))
        return max(d, self.birth)

    def past_weekday(self, low: int, high: int) -> date:
        """Like :meth:`days_ago`, moved off a weekend (earlier, unless that is before birth)."""
        d = self.days_ago(low, high)
        wd = d.weekday()
        if wd < 5:
            return d
        earlier = d - timedelta(days=wd - 4)
        return earlier if earlier >= self.birth else d + timedelta(days=7 - wd)


def _age(rng: Random, in_care_home: bool) -> int:
    if in_care_home:
        return min(rng.randint(75, 90) + rng.randint(0, 12), 103)
    pick = rng.random() * sum(b[2] for b in AGE_BANDS)
    for low, high, weight in AGE_BANDS:
        if pick < weight:
            return rng.randint(low, high)
        pick -= weight
    return rng.randint(80, 99)


def profile(index: int, seed: int, today: date) -> Person:
    """Draw person ``index``'s profile from ``Random(seed * 1_000_003 + index)``."""
    rng = Random(seed * 1_000_003 + index)
    in_home = rng.random() < CARE_HOME_SHARE
    age = _age(rng, in_home)
    female = rng.random() < (0.68 if age >= 80 else 0.51)
    birth = today - timedelta(days=age * 365 + age // 4 + rng.randint(1, 364))
    area = organisations.area_of(index)
    practice = organisations.practice(area, seed)
    gp = rng.choice(practice.members("gp"))
    home = organisations.care_home(organisations.care_home_of(index), seed) if in_home else None
    person = Person(index, seed, rng, today, female, birth, age, practice, gp,
                    organisations.pharmacy(area, seed), home, None)
    band = person.band()
    for key, (min_age, odds) in CHRONIC.items():
        boost = 1.5 if in_home and key in ("stroke", "heart_failure", "af") else 1.0
        if age >= min_age and rng.random() < odds[band] * boost:
            person.chronic.append(key)
    dementia_odds = CARE_HOME_DEMENTIA if in_home else (0.0, 0.002, 0.03, 0.15)[band]
    if rng.random() < dementia_odds:
        person.dementia_code = "alzheimers" if rng.random() < 0.25 else "dementia"
    if not in_home and age >= 75 and (person.dementia_code or "stroke" in person.chronic
                                       or "heart_failure" in person.chronic or age >= 90):
        if rng.random() < 0.45:
            person.home_care = organisations.home_care(area, seed)
    frail = in_home or (age >= 85) or (person.dementia_code is not None and age >= 75)
    person.dnacpr = frail and rng.random() < (0.55 if in_home else 0.25)
    return person


def patient(p: Person) -> dict[str, Any]:
    """The Patient: NHS number, name, sex, birth date, home (or care home), GP registration."""
    rng = p.rng
    prefix = None
    if p.age >= 18:
        prefix = "Mr" if not p.female else rng.choice(("Mrs", "Ms", "Miss")) if p.age < 70 else "Mrs"
    name = names.human_name(rng, p.female, p.birth.year, prefix)
    if p.care_home is not None:
        address = dict(p.care_home.address, use="home", line=list(p.care_home.address["line"]))
    else:
        address = names.address(rng, names.TOWNS[organisations.area_of(p.index) % len(names.TOWNS)])
    telecom = [names.phone(rng, False)] if p.care_home is None and rng.random() < 0.5 else []
    if 14 <= p.age < 90 and p.care_home is None:
        telecom.append(names.phone(rng, True))
    out: dict[str, Any] = {
        "resourceType": "Patient", "id": p.pid,
        "identifier": [identifiers.identifier(identifiers.NHS_NUMBER,
                                              identifiers.nhs_number(p.index, p.seed), "official")],
        "active": True, "name": [name],
    }
    if telecom:
        out["telecom"] = telecom
    out.update({"gender": "female" if p.female else "male", "birthDate": p.birth.isoformat(),
                "address": [address],
                "generalPractitioner": [
                    {"reference": f"Organization/{p.practice.organization}"},
                    {"reference": f"Practitioner/{p.usual_gp.practitioner}"}]})
    if p.care_home is not None or p.dementia_code or p.age < 16:
        out["contact"] = [_contact(p, name["family"])]
    return out


def _contact(p: Person, family: str) -> dict[str, Any]:
    """A next of kin: a parent for a child, otherwise a son or daughter (or partner)."""
    rng = p.rng
    relation = "parent" if p.age < 16 else "partner" if p.age < 60 else rng.choice(("son", "daughter"))
    female = relation == "daughter" or (relation != "son" and rng.random() < 0.5)
    born = p.birth.year - 28 if relation == "parent" else p.birth.year + (0 if relation == "partner" else 28)
    return {"relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0131",
                                          "code": "N", "display": "Next-of-Kin"}],
                              "text": relation}],
            "name": names.human_name(rng, female, born, family=family),
            "telecom": [names.phone(rng, True)]}
