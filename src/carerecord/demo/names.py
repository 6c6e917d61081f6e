"""Names, places, addresses and phone numbers for a synthetic West Yorkshire community.

Towns and their postcode districts are real; streets are common English street names, so any
match to a real address is accidental. Postcodes have the valid UK format (outward code of the
town, inward code digit + two letters from the set allowed in inward codes). Phone numbers come
from the Ofcom ranges reserved for drama (01632 960xxx, 07700 900xxx), so none can ring anyone.
"""

from __future__ import annotations

from random import Random
from typing import Any, NamedTuple


class Town(NamedTuple):
    name: str
    districts: tuple[str, ...]  # postcode outward codes


TOWNS: tuple[Town, ...] = (
    Town("Leeds", ("LS6", "LS7", "LS8", "LS9", "LS11", "LS12", "LS13", "LS15", "LS16", "LS17")),
    Town("Bradford", ("BD1", "BD2", "BD3", "BD5", "BD6", "BD8", "BD9", "BD10")),
    Town("Wakefield", ("WF1", "WF2", "WF3", "WF4")),
    Town("Huddersfield", ("HD1", "HD2", "HD3", "HD4", "HD5")),
    Town("Halifax", ("HX1", "HX2", "HX3", "HX6")),
)

STREET_STEMS = (
    "Church", "Station", "Victoria", "Mill", "Park", "Chapel", "Manor", "Queens", "Kings", "Albert",
    "Beech", "Oak", "Elm", "Ash", "Willow", "Moor", "Westfield", "Springfield", "Highfield",
    "Canal", "Granby", "Harehills", "Cross", "Dale", "Fairfield",
    "Grange", "Holly", "Meadow", "Orchard", "Rose", "Stanley", "Woodland", "Hollin", "Brook",
)
STREET_KINDS = ("Street", "Road", "Lane", "Avenue", "Grove", "Terrace", "Close", "Crescent",
                "Drive", "Mount", "View", "Walk")
INWARD_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"  # letters allowed in the inward code

SURNAMES = (
    "Smith", "Jones", "Williams", "Taylor", "Brown", "Davies", "Evans", "Wilson", "Thomas",
    "Johnson", "Roberts", "Robinson", "Thompson", "Wright", "Walker", "White", "Edwards", "Hughes",
    "Green", "Hall", "Lewis", "Harris", "Clarke", "Patel", "Jackson", "Wood", "Turner", "Martin",
    "Cooper", "Hill", "Ward", "Morris", "Moore", "Clark", "Lee", "King", "Baker", "Harrison",
    "Morgan", "Allen", "James", "Scott", "Phillips", "Watson", "Parker", "Price", "Bennett",
    "Young", "Griffiths", "Mitchell", "Kelly", "Cook", "Carter", "Richardson", "Bailey", "Collins",
    "Bell", "Shaw", "Murphy", "Miller", "Cox", "Richards", "Khan", "Marshall", "Anderson",
    "Simpson", "Ellis", "Adams", "Singh", "Begum", "Wilkinson", "Foster", "Chapman", "Powell",
    "Webb", "Rogers", "Gray", "Mason", "Ali", "Hunt", "Hussain", "Campbell", "Matthews", "Owen",
    "Palmer", "Holmes", "Mills", "Barnes", "Knight", "Lloyd", "Butler", "Russell", "Barker",
    "Fisher", "Stevens", "Jenkins", "Murray", "Dixon", "Harvey", "Ahmed", "Kaur", "Nowak",
    "Kowalski", "Okafor", "Mensah", "Sutcliffe", "Ackroyd", "Haigh", "Brearley", "Mahmood",
)

# Given names by birth cohort (start year of the cohort), female then male.
GIVEN_NAMES: tuple[tuple[int, tuple[str, ...], tuple[str, ...]], ...] = (
    (1900, ("Margaret", "Joan", "Dorothy", "Doris", "Elsie", "Irene", "Edna", "Jean", "Mary", "Betty",
            "Barbara", "Patricia", "Sheila", "Joyce", "Eileen", "Kathleen", "Winifred", "Audrey"),
           ("John", "William", "George", "Arthur", "Albert", "Frank", "Harold", "Kenneth", "Ernest",
            "Ronald", "Dennis", "Stanley", "Norman", "Peter", "Brian", "Leonard", "Walter", "Eric")),
    (1950, ("Susan", "Linda", "Christine", "Karen", "Julie", "Tracey", "Alison", "Elaine", "Deborah",
            "Janet", "Sarah", "Helen", "Amanda", "Nasreen", "Jacqueline", "Angela", "Wendy", "Gillian"),
           ("David", "Paul", "Mark", "Stephen", "Andrew", "Michael", "Ian", "Gary", "Richard", "Robert",
            "Anthony", "Christopher", "Neil", "Mohammed", "Kevin", "Philip", "Graham", "Martin")),
    (1980, ("Emma", "Laura", "Rebecca", "Gemma", "Claire", "Lisa", "Hannah", "Amy", "Sophie",
            "Jessica", "Zoe", "Aisha", "Natalie", "Kirsty", "Samina", "Charlotte", "Lauren", "Agnieszka"),
           ("James", "Daniel", "Matthew", "Thomas", "Adam", "Ryan", "Luke", "Jamie", "Craig", "Lee",
            "Imran", "Ben", "Jonathan", "Carl", "Tomasz", "Usman", "Nathan", "Scott")),
    (2000, ("Olivia", "Amelia", "Isla", "Ava", "Mia", "Emily", "Poppy", "Grace", "Freya", "Maryam",
            "Fatima", "Zara", "Ruby", "Evie", "Lily", "Ella", "Sienna", "Hafsa"),
           ("Oliver", "Noah", "Harry", "George", "Jack", "Leo", "Arthur", "Muhammad", "Charlie",
            "Oscar", "Alfie", "Theo", "Freddie", "Archie", "Ibrahim", "Jacob", "Logan", "Ayaan")),
)


def given_name(rng: Random, female: bool, birth_year: int) -> str:
    """A given name plausible for someone of this sex born in this year."""
    pool = GIVEN_NAMES[0]
    for cohort in GIVEN_NAMES:
        if birth_year >= cohort[0]:
            pool = cohort
    return rng.choice(pool[1] if female else pool[2])


def human_name(rng: Random, female: bool, birth_year: int, prefix: str | None = None,
               family: str | None = None) -> dict[str, Any]:
    """A HumanName with use "official"."""
    out: dict[str, Any] = {"use": "official", "family": family or rng.choice(SURNAMES),
                           "given": [given_name(rng, female, birth_year)]}
    if prefix:
        out["prefix"] = [prefix]
    return out


def postcode(rng: Random, town: Town) -> str:
    """A valid-format postcode in one of the town's districts."""
    return (f"{rng.choice(town.districts)} {rng.randrange(1, 10)}"
            f"{rng.choice(INWARD_LETTERS)}{rng.choice(INWARD_LETTERS)}")


def street(rng: Random) -> str:
    return f"{rng.choice(STREET_STEMS)} {rng.choice(STREET_KINDS)}"


def address(rng: Random, town: Town, use: str = "home", house: str | None = None) -> dict[str, Any]:
    """A UK Address: house number and street (or a named house, then the street), town, postcode."""
    lines = [house, street(rng)] if house else [f"{rng.randrange(1, 180)} {street(rng)}"]
    return {"use": use, "line": lines, "city": town.name, "district": "West Yorkshire",
            "postalCode": postcode(rng, town), "country": "GB"}


def phone(rng: Random, mobile: bool, use: str = "home") -> dict[str, Any]:
    """A ContactPoint with a number from Ofcom's drama ranges."""
    number = f"07700 900{rng.randrange(1000):03d}" if mobile else f"01632 960{rng.randrange(1000):03d}"
    return {"system": "phone", "value": number, "use": "mobile" if mobile else use}
