"""The starter knowledge base bundled with carerecord, read from the versioned JSON files in
``data/`` (``medicines.json``, ``interactions.json``, ``allergies.json``, ``doses.json``).

It was written by the carerecord team from public sources (MHRA Drug Safety Update, NICE
and the BNF as published by NICE, summaries of product characteristics) and every rule cites
its source. It is a starter, not a complete or authoritative set: a deployment should load a
licensed, maintained knowledge base through the ``knowledge.KnowledgeBase`` interface."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from typing import Any

import orjson

from carerecord.services.medicines.findings import Source
from carerecord.services.medicines.knowledge import (
    AllergyGroup,
    CrossReaction,
    DoseLimit,
    DrugClass,
    Ingredient,
    InteractionRule,
    Medicine,
    RenalLimit,
    normalise,
    slug,
)


def _source(raw: Mapping[str, Any]) -> Source:
    return Source(raw["title"], raw.get("publisher", ""), raw.get("url", ""), raw.get("date", ""))


def _keys(side: Mapping[str, Any]) -> frozenset[str]:
    return frozenset([f"c:{c}" for c in side.get("classes", ())]
                     + [f"i:{slug(i)}" for i in side.get("ingredients", ())])


class BundledKnowledgeBase:
    """A ``KnowledgeBase`` over the JSON documents (parsed JSON, one per file)."""

    def __init__(self, medicines: Mapping[str, Any], interactions: Mapping[str, Any],
                 allergies: Mapping[str, Any], doses: Mapping[str, Any]) -> None:
        self.version = str(medicines["version"])
        self.statement = str(medicines["about"]["statement"])
        self._classes = {cid: DrugClass(cid, c["name"], tuple(c.get("parents", ())),
                                        bool(c.get("duplicate_therapy")), tuple(c.get("synonyms", ())))
                         for cid, c in medicines["classes"].items()}
        self._ingredients: dict[str, Ingredient] = {}
        self._by_substance: dict[str, str] = {}
        for raw in medicines["ingredients"]:
            ing = Ingredient(slug(raw["name"]), raw["name"], tuple(raw.get("classes", ())),
                             tuple(s["code"] for s in raw.get("substances", ())),
                             tuple(raw.get("synonyms", ())))
            unknown = [c for c in ing.classes if c not in self._classes]
            if unknown:
                raise ValueError(f"{ing.name}: unknown classes {unknown}")
            self._ingredients[ing.id] = ing
            for code in ing.substance_codes:
                self._by_substance[code] = ing.id
        self._by_vtm: dict[str, Medicine] = {}
        self.medicines: list[Medicine] = []
        for raw in medicines["medicines"]:
            med = Medicine(raw["name"], tuple(slug(i) for i in raw["ingredients"]), raw.get("vtm"))
            self.medicines.append(med)
            if med.vtm:
                self._by_vtm[med.vtm] = med
        self._names = self._name_index()
        self._rules: dict[str, list[InteractionRule]] = defaultdict(list)
        for raw in interactions["interactions"]:
            rule = InteractionRule(raw["id"], _keys(raw["a"]), _keys(raw["b"]), raw["severity"],
                                   raw["effect"], raw["mechanism"], raw["advice"],
                                   _source(raw["source"]), raw["group"])
            for key in rule.a | rule.b:
                self._rules[key].append(rule)
        self._groups = [AllergyGroup(g["id"], frozenset(g["classes"]), g["severity"], g["why"],
                                     tuple(CrossReaction(frozenset(x["classes"]), x["severity"], x["why"])
                                           for x in g.get("cross", ())), _source(g["source"]))
                        for g in allergies["groups"]]
        self._doses: dict[str, list[DoseLimit]] = defaultdict(list)
        for raw in doses["limits"]:
            ing_id = slug(raw["ingredient"])
            self._doses[ing_id].append(DoseLimit(ing_id, raw["per"], float(raw["max_mg"]),
                                                 raw.get("route", ""), int(raw.get("age_from", 0)),
                                                 raw.get("note", ""), _source(raw["source"])))
        self._renal: dict[str, list[RenalLimit]] = defaultdict(list)
        for raw in doses["renal"]:
            for key in _keys(raw):
                self._renal[key].append(RenalLimit(key, float(raw["egfr_below"]), raw.get("max_daily_mg"),
                                                   raw["severity"], raw["advice"], _source(raw["source"])))

    def _name_index(self) -> dict[str, str]:
        names: dict[str, str] = {}
        for cid, c in self._classes.items():
            for n in (c.name, *c.synonyms):
                names[normalise(n)] = f"c:{cid}"
        for ing in self._ingredients.values():
            for n in (ing.name, *ing.synonyms):
                names[normalise(n)] = f"i:{ing.id}"
        for med in self.medicines:
            names.setdefault(normalise(med.name), f"m:{med.name}")
        return names

    # -- KnowledgeBase ---------------------------------------------------------------------------
    def ingredient(self, ingredient_id: str) -> Ingredient | None:
        return self._ingredients.get(ingredient_id)

    def drug_class(self, class_id: str) -> DrugClass | None:
        return self._classes.get(class_id)

    def ingredient_for_substance(self, code: str) -> str | None:
        return self._by_substance.get(code)

    def medicine_for_vtm(self, code: str) -> Medicine | None:
        return self._by_vtm.get(code)

    def medicine_named(self, name: str) -> Medicine | None:
        target = normalise(name)
        return next((m for m in self.medicines if normalise(m.name) == target), None)

    def names(self) -> Mapping[str, str]:
        return self._names

    def class_closure(self, class_ids: Iterable[str]) -> frozenset[str]:
        return _closure(self, frozenset(class_ids))

    def classes_of(self, ingredient_ids: Iterable[str]) -> frozenset[str]:
        direct = [c for i in ingredient_ids if (ing := self._ingredients.get(i)) for c in ing.classes]
        return _closure(self, frozenset(direct))

    def interactions(self, keys: Iterable[str]) -> list[InteractionRule]:
        seen: dict[str, InteractionRule] = {}
        for key in keys:
            for rule in self._rules.get(key, ()):
                seen[rule.id] = rule
        return list(seen.values())

    def allergy_groups(self) -> list[AllergyGroup]:
        return self._groups

    def dose_limits(self, ingredient_id: str) -> list[DoseLimit]:
        return self._doses.get(ingredient_id, [])

    def renal_limits(self, keys: Iterable[str]) -> list[RenalLimit]:
        return [r for k in keys for r in self._renal.get(k, ())]


def _closure(kb: BundledKnowledgeBase, classes: frozenset[str]) -> frozenset[str]:
    out: set[str] = set()
    todo = list(classes)
    while todo:
        cid = todo.pop()
        if cid in out:
            continue
        out.add(cid)
        c = kb.drug_class(cid)
        if c is not None:
            todo.extend(c.parents)
    return frozenset(out)


def _read(name: str) -> Any:
    return orjson.loads(resources.files("carerecord.services.medicines").joinpath("data", name).read_bytes())


@cache
def bundled() -> BundledKnowledgeBase:
    """The bundled starter knowledge base (parsed once per process)."""
    return BundledKnowledgeBase(_read("medicines.json"), _read("interactions.json"),
                                _read("allergies.json"), _read("doses.json"))
