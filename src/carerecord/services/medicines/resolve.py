"""Resolution of what a FHIR resource names (a medicine ordered or taken, or what a person is
allergic to) into ingredients and drug classes, which is what every check compares.

Matching works at every level, most specific first:

1. a dm+d AMP, VMP or VTM code (SNOMED CT, or the ``https://dmd.nhs.uk`` system) through the
   loaded dm+d release (its VMP ingredients give substances and strengths);
2. a VTM code or SNOMED CT substance code the knowledge base knows;
3. the words of the codings' displays and the text, matched against ingredient, class and
   medicine names ("Amoxicillin 500mg capsules", "penicillin allergy").

When none of these finds anything the result is *unresolved*: the checks then say plainly
that the order or allergy could not be checked, rather than staying silent."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from carerecord.services.medicines.knowledge import KnowledgeBase, normalise
from carerecord.services.medicines.terminology import Strength, Terminology

SNOMED = "http://snomed.info/sct"
DMD = "https://dmd.nhs.uk"
_CODE_SYSTEMS = (SNOMED, DMD)
_STRENGTH = re.compile(r"(\d+(?:\.\d+)?)\s*(mg|micrograms?|mcg|g|grams?|nanograms?)\b"
                       r"(?:\s*/\s*(\d+(?:\.\d+)?)?\s*(ml|dose|actuation))?", re.I)
_FORMS = {"tablet": "tablet", "tablets": "tablet", "capsule": "capsule", "capsules": "capsule",
          "sachet": "sachet", "sachets": "sachet", "suppository": "suppository",
          "suppositories": "suppository", "pessary": "pessary", "pessaries": "pessary",
          "lozenge": "lozenge", "lozenges": "lozenge"}


@dataclass(frozen=True, slots=True)
class Resolved:
    """What a medicine or allergen resolves to. ``basis`` says how (for the evidence shown
    to the clinician); ``strengths`` is per ingredient id for a single product."""

    display: str
    ingredients: frozenset[str] = frozenset()
    classes: frozenset[str] = frozenset()
    basis: str = ""
    strengths: Mapping[str, Strength] = field(default_factory=dict)
    unit_dose: str | None = None

    @property
    def checked(self) -> bool:
        return bool(self.ingredients or self.classes)

    @property
    def keys(self) -> frozenset[str]:
        return frozenset({f"i:{i}" for i in self.ingredients} | {f"c:{c}" for c in self.classes})


def _mg_strength(value: str, unit: str, den: str | None, den_unit: str | None) -> Strength:
    unit = unit.lower()
    factor = 1000.0 if unit.startswith("g") else 0.001 if unit.startswith(("microgram", "mcg")) \
        else 1e-6 if unit.startswith("nanogram") else 1.0
    return Strength(float(value) * factor, "mg", float(den or 1) if den_unit else None,
                    den_unit.lower() if den_unit else None)


class Resolver:
    """Resolves codeable concepts and resources against a knowledge base and (optionally) a
    loaded dm+d release. Results are cached per distinct concept, so checking a patient's
    twenty medicines repeatedly costs dictionary look-ups."""

    def __init__(self, kb: KnowledgeBase, terminology: Terminology | None = None) -> None:
        self.kb = kb
        self.terminology = terminology or Terminology()
        self._cache: dict[str, Resolved] = {}
        self._first: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        for name, key in kb.names().items():
            words = tuple(name.split())
            if words:
                self._first.setdefault(words[0], []).append((words, key))
        for entries in self._first.values():
            entries.sort(key=lambda e: -len(e[0]))

    # -- public -----------------------------------------------------------------------------------
    def concept(self, cc: Mapping[str, Any] | None) -> Resolved:
        """Resolve a CodeableConcept (None or empty: unresolved)."""
        if not cc:
            return Resolved("no medicine or substance recorded")
        codings = cc.get("coding", ())
        key = repr([(c.get("system"), c.get("code"), c.get("display")) for c in codings]) + "|" + cc.get("text", "")
        hit = self._cache.get(key)
        if hit is None:
            hit = self._concept(cc)
            if len(self._cache) < 100_000:
                self._cache[key] = hit
        return hit

    def medication(self, resource: Mapping[str, Any],
                   medications: Mapping[str, Mapping[str, Any]] | None = None) -> Resolved:
        """What a MedicationRequest, MedicationStatement or MedicationAdministration is for:
        its medicationCodeableConcept, or the Medication its medicationReference names
        (contained ``#id``, or ``Medication/id`` in ``medications``), whose code or
        ingredients are resolved."""
        if "medicationCodeableConcept" in resource:
            return self.concept(resource["medicationCodeableConcept"])
        ref = resource.get("medicationReference", {})
        target = ref.get("reference", "")
        med: Mapping[str, Any] | None = None
        if target.startswith("#"):
            med = next((c for c in resource.get("contained", ()) if c.get("id") == target[1:]), None)
        elif medications is not None:
            med = medications.get("/".join(target.split("/_history")[0].split("/")[-2:]))
        if med is None:
            return self.concept({"text": ref.get("display", "")} if ref.get("display") else None)
        found = self.concept(med.get("code"))
        if found.checked:
            return found
        parts = [self.concept(i.get("itemCodeableConcept")) for i in med.get("ingredient", ())]
        ingredients = frozenset().union(*(p.ingredients for p in parts)) if parts else frozenset()
        if not ingredients:
            return found
        return Resolved(found.display, ingredients, self.kb.classes_of(ingredients),
                        "Medication ingredients")

    # -- resolution -----------------------------------------------------------------------------
    def _concept(self, cc: Mapping[str, Any]) -> Resolved:
        codings = [c for c in cc.get("coding", ()) if isinstance(c, Mapping)]
        display = cc.get("text") or next((c["display"] for c in codings if c.get("display")), "") \
            or next((self._product_name(str(c.get("code", ""))) for c in codings), "")
        for c in codings:
            if c.get("system") in _CODE_SYSTEMS and c.get("code"):
                found = self._code(str(c["code"]), display)
                if found is not None:
                    return found
        texts = [cc.get("text", "")] + [c.get("display", "") for c in codings]
        for text in texts:
            if text:
                found = self._text(text, display)
                if found.checked:
                    return found
        return Resolved(display)

    def _code(self, code: str, display: str) -> Resolved | None:
        kb = self.kb
        product = self.terminology.product(code)
        if product is not None:
            level, vmp, vtm = product
            if vmp is not None and vmp.ingredients:
                strengths: dict[str, Strength] = {}
                ingredients: set[str] = set()
                for pi in vmp.ingredients:
                    ing = kb.ingredient_for_substance(pi.base_substance or "") \
                        or kb.ingredient_for_substance(pi.substance)
                    if ing is None:
                        name = self.terminology.substances.get(pi.substance, "")
                        by_name = self._text(name, name).ingredients if name else frozenset()
                        ing = next(iter(by_name)) if len(by_name) == 1 else None
                    if ing:
                        ingredients.add(ing)
                        if pi.strength is not None and pi.strength.numerator_unit in ("mg", "g", "microgram"):
                            s = pi.strength
                            strengths[ing] = _mg_strength(str(s.numerator), s.numerator_unit, str(s.denominator or 1),
                                                          s.denominator_unit)
                if ingredients:
                    fi = frozenset(ingredients)
                    return Resolved(display or vmp.name, fi, kb.classes_of(fi), f"dm+d {level} {code} ({vmp.name})",
                                    strengths, vmp.unit_dose_unit)
            if vtm is not None:
                found = self._vtm(vtm.id, vtm.name) or self._text(vtm.name, display or vtm.name)
                if found.checked:
                    return Resolved(display or vtm.name, found.ingredients, found.classes,
                                    f"dm+d {level} {code} ({vtm.name})")
        med = kb.medicine_for_vtm(code)
        if med is not None:
            found_vtm = self._vtm(code, med.name)
            if found_vtm is not None:
                return Resolved(display or med.name, found_vtm.ingredients, found_vtm.classes,
                                f"dm+d VTM {code} ({med.name})", *self._parsed(display, found_vtm.ingredients))
        ing_id = kb.ingredient_for_substance(code)
        if ing_id is not None:
            known = kb.ingredient(ing_id)
            fi = frozenset({ing_id})
            return Resolved(display or (known.name if known else code), fi, kb.classes_of(fi),
                            f"SNOMED CT substance {code}")
        return None

    def _product_name(self, code: str) -> str:
        product = self.terminology.product(code)
        if product is None:
            return f"code {code}"
        _, vmp, vtm = product
        amp = self.terminology.amps.get(code)
        return amp.name if amp else vmp.name if vmp else vtm.name if vtm else code

    def _vtm(self, code: str, name: str) -> Resolved | None:
        med = self.kb.medicine_for_vtm(code)
        if med is None:
            return None
        fi = frozenset(med.ingredients)
        return Resolved(name, fi, self.kb.classes_of(fi), f"dm+d VTM {code}")

    def _parsed(self, text: str, ingredients: frozenset[str]) -> tuple[dict[str, Strength], str | None]:
        """Strength and unit dose form read from a product name like "Paracetamol 500mg
        tablets" (only for a single-ingredient product, where it is unambiguous)."""
        words = normalise(text).split()
        unit_dose = next((_FORMS[w] for w in words if w in _FORMS), None)
        m = _STRENGTH.search(text)
        if m is None or len(ingredients) != 1:
            return {}, unit_dose
        return {next(iter(ingredients)): _mg_strength(m.group(1), m.group(2), m.group(3), m.group(4))}, unit_dose

    def _text(self, text: str, display: str) -> Resolved:
        words = normalise(text).split()
        ingredients: set[str] = set()
        classes: set[str] = set()
        i = 0
        while i < len(words):
            for name_words, key in self._first.get(words[i], ()):
                if tuple(words[i:i + len(name_words)]) == name_words:
                    kind, _, ident = key.partition(":")
                    if kind == "i":
                        ingredients.add(ident)
                    elif kind == "c":
                        classes.add(ident)
                    elif kind == "m" and (med := self.kb.medicine_named(ident)) is not None:
                        ingredients.update(med.ingredients)
                    i += len(name_words) - 1
                    break
            i += 1
        if not ingredients and not classes:
            return Resolved(display)
        fi = frozenset(ingredients)
        all_classes = self.kb.classes_of(fi) | self.kb.class_closure(classes)
        strengths, unit_dose = self._parsed(text, fi)
        return Resolved(display, fi, all_classes, f"name \"{text}\" (no recognised code)", strengths, unit_dose)
