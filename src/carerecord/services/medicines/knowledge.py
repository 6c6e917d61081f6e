"""The medicines knowledge a check needs, as a small Protocol so a deployment can plug in a
licensed knowledge base (a commercial interaction set, the full BNF, a national service)
in place of the starter set bundled with carerecord (``bundled.BundledKnowledgeBase``).

Concepts:

- an *ingredient* is a therapeutic moiety (``amoxicillin``), known by its SNOMED CT substance
  codes (the base and its salts: dm+d records the salt actually in a product);
- a *drug class* (``penicillins``) groups ingredients; classes have parents
  (``penicillins`` < ``beta_lactams``), and a rule about a class applies to every member;
- a *medicine* is a dm+d virtual therapeutic moiety (VTM): a name, its VTM code, and its
  ingredients (co-amoxiclav = amoxicillin + clavulanic acid).

Rules name ingredients or classes by key: ``i:<ingredient id>`` or ``c:<class id>``."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from carerecord.services.medicines.findings import Source

_NON_WORD = re.compile(r"[^a-z0-9]+")


def normalise(text: str) -> str:
    """Lower case, punctuation to single spaces: the form names are matched in."""
    return _NON_WORD.sub(" ", text.lower()).strip()


def slug(name: str) -> str:
    """The id of an ingredient from its name: ``Clavulanic acid`` -> ``clavulanic_acid``."""
    return normalise(name).replace(" ", "_")


@dataclass(frozen=True, slots=True)
class DrugClass:
    id: str
    name: str
    parents: tuple[str, ...] = ()
    duplicate_therapy: bool = False
    synonyms: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Ingredient:
    id: str
    name: str
    classes: tuple[str, ...]
    substance_codes: tuple[str, ...] = ()
    synonyms: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Medicine:
    name: str
    ingredients: tuple[str, ...]
    vtm: str | None = None


@dataclass(frozen=True, slots=True)
class InteractionRule:
    """Giving something in ``a`` with something in ``b`` (either way round) causes ``effect``.
    ``severity`` is ``contraindicated``, ``severe``, ``moderate`` or ``mild``; ``group`` names
    the effect (``bleeding``, ``qt``...) so that when a general and a specific rule both match
    a pair, only the most severe of the group is reported."""

    id: str
    a: frozenset[str]
    b: frozenset[str]
    severity: str
    effect: str
    mechanism: str
    advice: str
    source: Source
    group: str


@dataclass(frozen=True, slots=True)
class CrossReaction:
    classes: frozenset[str]
    severity: str
    why: str


@dataclass(frozen=True, slots=True)
class AllergyGroup:
    """An allergy to anything in ``classes`` means avoiding every member of them
    (``severity``) and care with members of ``cross`` (cross-sensitivity)."""

    id: str
    classes: frozenset[str]
    severity: str
    why: str
    cross: tuple[CrossReaction, ...]
    source: Source


@dataclass(frozen=True, slots=True)
class DoseLimit:
    """The adult maximum of one ingredient, in mg per ``per`` (``dose``, ``day`` or
    ``week``), for ``route`` (empty: any route), from age ``age_from`` (0: all adults)."""

    ingredient: str
    per: str
    max_mg: float
    route: str
    age_from: int
    note: str
    source: Source


@dataclass(frozen=True, slots=True)
class RenalLimit:
    """Below ``egfr_below`` mL/min/1.73m2: avoid (``max_daily_mg`` None) or keep the daily
    dose at most ``max_daily_mg``. ``key`` is an ingredient or class key."""

    key: str
    egfr_below: float
    max_daily_mg: float | None
    severity: str
    advice: str
    source: Source


class KnowledgeBase(Protocol):
    """What the checks ask of a knowledge base. Implementations must be safe to share
    between threads (read-only after construction)."""

    version: str
    statement: str

    def ingredient(self, ingredient_id: str) -> Ingredient | None: ...

    def drug_class(self, class_id: str) -> DrugClass | None: ...

    def ingredient_for_substance(self, code: str) -> str | None: ...

    def medicine_for_vtm(self, code: str) -> Medicine | None: ...

    def medicine_named(self, name: str) -> Medicine | None: ...

    def names(self) -> Mapping[str, str]:
        """Normalised names and synonyms to keys (``i:..``, ``c:..``, or ``m:<medicine name>``
        for a combination product such as co-amoxiclav), for text matching."""
        ...

    def classes_of(self, ingredient_ids: Iterable[str]) -> frozenset[str]:
        """Every class of these ingredients, with all ancestors."""
        ...

    def class_closure(self, class_ids: Iterable[str]) -> frozenset[str]: ...

    def interactions(self, keys: Iterable[str]) -> list[InteractionRule]:
        """The rules with a side among ``keys`` (ingredient and class keys)."""
        ...

    def allergy_groups(self) -> list[AllergyGroup]: ...

    def dose_limits(self, ingredient_id: str) -> list[DoseLimit]: ...

    def renal_limits(self, keys: Iterable[str]) -> list[RenalLimit]: ...


SEVERITY_OF_RULE = {"contraindicated": 3, "severe": 3, "moderate": 2, "mild": 1}
"""How a rule's severity maps to a finding's (3 critical, 2 warning, 1 info): contraindicated
and severe combinations block signing until a prescriber records why they go ahead."""
